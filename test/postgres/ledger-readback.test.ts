import { onPostgres } from "../support/postgres.js"

await onPostgres("http/ledger-readback", () => import("../http/ledger-readback.test.ts" + "?postgres"))
