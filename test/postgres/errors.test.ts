import { onPostgres } from "../support/postgres.js"

await onPostgres("http/errors", () => import("../http/errors.test.ts" + "?postgres"))
