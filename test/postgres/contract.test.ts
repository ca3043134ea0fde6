import { onPostgres } from "../support/postgres.js"

await onPostgres("http/contract", () => import("../http/contract.test.ts" + "?postgres"))
