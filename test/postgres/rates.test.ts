import { onPostgres } from "../support/postgres.js"

await onPostgres("http/rates", () => import("../http/rates.test.ts" + "?postgres"))
