import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/hot-deadline", () => import("../faults/hot-deadline.test.ts" + "?postgres"))
