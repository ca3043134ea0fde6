import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/deadline", () => import("../faults/deadline.test.ts" + "?postgres"))
