import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/redis-busy", () => import("../faults/redis-busy.test.ts" + "?postgres"))
