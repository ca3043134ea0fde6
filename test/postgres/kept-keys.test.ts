import { onPostgres } from "../support/postgres.js"

await onPostgres("http/kept-keys", () => import("../http/kept-keys.test.ts" + "?postgres"))
