import { onPostgres } from "../support/postgres.js"

await onPostgres("fuzz/http", () => import("../fuzz/http.test.ts" + "?postgres"))
