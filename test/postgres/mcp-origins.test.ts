import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/origins", () => import("../mcp/origins.test.ts" + "?postgres"))
