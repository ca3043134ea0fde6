import { onPostgres } from "../support/postgres.js"

await onPostgres("http/memory", () => import("../http/memory.test.ts" + "?postgres"))
