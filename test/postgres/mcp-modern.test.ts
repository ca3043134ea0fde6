import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/modern", () => import("../mcp/modern.test.ts" + "?postgres"))
