import { onPostgres } from "../support/postgres.js"

await onPostgres("http/group-commit", () => import("../http/group-commit.test.ts" + "?postgres"))
