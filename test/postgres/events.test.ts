import { onPostgres } from "../support/postgres.js"

await onPostgres("http/events", () => import("../http/events.test.ts" + "?postgres"))
