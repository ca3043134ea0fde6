import { onPostgres } from "../support/postgres.js"

await onPostgres("http/tenant-walk", () => import("../http/tenant-walk.test.ts" + "?postgres"))
