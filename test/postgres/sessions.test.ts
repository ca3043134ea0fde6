import { onPostgres } from "../support/postgres.js"

await onPostgres("http/sessions", () => import("../http/sessions.test.ts" + "?postgres"))
