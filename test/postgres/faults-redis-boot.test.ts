import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/redis-boot", () => import("../faults/redis-boot.test.ts" + "?postgres"))
