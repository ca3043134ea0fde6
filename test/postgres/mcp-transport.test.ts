import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/transport", () => import("../mcp/transport.test.ts" + "?postgres"))
