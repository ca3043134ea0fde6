import { onPostgres } from "../support/postgres.js"

await onPostgres("http/auth", () => import("../http/auth.test.ts" + "?postgres"))
