import { onPostgres } from "../support/postgres.js"

await onPostgres("http/stream-caps", () => import("../http/stream-caps.test.ts" + "?postgres"))
