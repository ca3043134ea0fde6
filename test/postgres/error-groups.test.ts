import { onPostgres } from "../support/postgres.js"

await onPostgres("http/error-groups", () => import("../http/error-groups.test.ts" + "?postgres"))
