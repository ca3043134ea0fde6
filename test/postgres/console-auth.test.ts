import { onPostgres } from "../support/postgres.js"

await onPostgres("http/console-auth", () => import("../http/console-auth.test.ts" + "?postgres"))
