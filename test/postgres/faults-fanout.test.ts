import { onPostgres } from "../support/postgres.js"

await onPostgres("faults/fanout", () => import("../faults/fanout.test.ts" + "?postgres"))
