import { onPostgres } from "../support/postgres.js"

await onPostgres("scale/stream-storm", () => import("../scale/stream-storm.test.ts" + "?postgres"))
