import { onPostgres } from "../support/postgres.js"

await onPostgres("http/health", () => import("../http/health.test.ts" + "?postgres"))
