import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/redis-samples", () => import("../faults/redis-samples.test.ts" + "?postgres"))
