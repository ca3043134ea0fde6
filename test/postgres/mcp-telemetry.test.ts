import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/telemetry", () => import("../mcp/telemetry.test.ts" + "?postgres"))
