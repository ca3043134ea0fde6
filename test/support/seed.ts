/** Rows that service tests (without HTTP) need before they start: one tenant with one session. */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const TENANT = "00000000-0000-4000-8000-000000000001"
export const SESSION = "00000000-0000-4000-8000-000000000002"

export const seedSession = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`INSERT INTO tenants (id, name, created_at) VALUES (${TENANT}, 'test', '2026-01-01T00:00:00.000Z')`
  yield* sql`INSERT INTO sessions (tenant_id, id, title, metadata, created_at, updated_at)
             VALUES (${TENANT}, ${SESSION}, NULL, '{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`
})
