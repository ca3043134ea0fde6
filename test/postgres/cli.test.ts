import { onPostgres } from "../support/postgres.js"

await onPostgres("cli/cli", () => import("../cli/cli.test.ts" + "?postgres"))
