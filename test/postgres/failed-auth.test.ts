import { onPostgres } from "../support/postgres.js"

await onPostgres("http/failed-auth", () => import("../http/failed-auth.test.ts" + "?postgres"))
