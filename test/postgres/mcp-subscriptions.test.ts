import { onPostgres } from "../support/postgres.js"

await onPostgres("mcp/subscriptions", () => import("../mcp/subscriptions.test.ts" + "?postgres"))
