import { onPostgres } from "../support/postgres.js"

await onPostgres("http/idempotency", () => import("../http/idempotency.test.ts" + "?postgres"))
