import { onPostgres } from "../support/postgres.js"

await onPostgres("telemetry/secrets", () => import("../telemetry/secrets.test.ts" + "?postgres"))
