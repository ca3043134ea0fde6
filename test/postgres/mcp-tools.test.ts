import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/tools", () => import("../mcp/tools.test.ts" + "?postgres"))
