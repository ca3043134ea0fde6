import { onPostgres } from "../support/postgres.js"

await onPostgres("http/stored-text", () => import("../http/stored-text.test.ts" + "?postgres"))
