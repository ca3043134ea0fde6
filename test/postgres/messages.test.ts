import { onPostgres } from "../support/postgres.js"

await onPostgres("http/messages", () => import("../http/messages.test.ts" + "?postgres"))
