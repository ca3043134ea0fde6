import { onPostgres } from "../support/postgres.js"

await onPostgres("http/memory-group-commit", () => import("../http/memory-group-commit.test.ts" + "?postgres"))
