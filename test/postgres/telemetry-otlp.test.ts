import { onPostgres } from "../support/postgres.js"

await onPostgres("telemetry/otlp", () => import("../telemetry/otlp.test.ts" + "?postgres"))
