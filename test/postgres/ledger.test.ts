import { onPostgres } from "../support/postgres.js"

await onPostgres("http/ledger", () => import("../http/ledger.test.ts" + "?postgres"))
