import { onPostgres } from "../support/postgres.js"

await onPostgres("http/pipeline", () => import("../http/pipeline.test.ts" + "?postgres"))
