import { onPostgres } from "../support/postgres.js"

await onPostgres("http/rate-limit-database", () => import("../http/rate-limit-database.test.ts" + "?postgres"))
