import { onPostgres } from "../support/postgres.js"

await onPostgres("http/rate-limit", () => import("../http/rate-limit.test.ts" + "?postgres"))
