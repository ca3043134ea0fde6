import { onPostgres } from "../support/postgres.js"

await onPostgres("http/health-details", () => import("../http/health-details.test.ts" + "?postgres"))
