import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/redis", () => import("../faults/redis.test.ts" + "?postgres"))
