/**
 * On PostgreSQL, a schema taken away underneath a running server (another session renames a table):
 * readiness, authentication and the memory store answer 503, never 404, 401 or 500, and heal when it
 * comes back. The PostgreSQL twin of the SQLite tests that rename a table through a second connection.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import type { SQL } from "bun"
import { connect, describeOnPostgres, harness } from "../support/postgres.js"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

let server: TestServer
let other: SQL
let key: string

await describeOnPostgres("a schema taken away on PostgreSQL", () => {
  beforeAll(async () => {
    harness.dialect = "postgres"
    server = await startServer()
    harness.dialect = "sqlite"
    other = connect(server.databaseUrl)
    key = (await server.createTenant()).api_key
  })
  afterAll(async () => {
    await other.close()
    await server.close()
  })

  test("/health/ready and /health are 503 while the tenants table is gone, 200 again once it is back", async () => {
    await other.unsafe("ALTER TABLE tenants RENAME TO tenants_away")
    try {
      await expectProblem(await server.fetch("/health/ready"), 503, "DATABASE_UNAVAILABLE")
      const health = await server.admin("/health")
      expect(health.status).toBe(503)
      expect(await health.json()).toMatchObject({ code: "DATABASE_UNAVAILABLE", health: { dependencies: { database: { status: "down" } } } })
      expect((await server.fetch("/health/live")).status).toBe(200)
    } finally {
      await other.unsafe("ALTER TABLE tenants_away RENAME TO tenants")
    }
    await server.admin("/v1/admin/breakers/database", { method: "POST", body: JSON.stringify({ action: "close" }) })
    expect((await server.fetch("/health/ready")).status).toBe(200)
  })

  test("when the keys table is gone a request is refused with 503, not let through and not 401", async () => {
    const fault = faultMatrix(server, "keys-table-gone", { broken: "the API keys table", how: "another session renames `api_keys` away; `GET /v1/sessions` with a key", dependency: "database" })
    await other.unsafe("ALTER TABLE api_keys RENAME TO api_keys_away")
    try {
      await fault.saw(await expectProblem(await server.fetch("/v1/sessions", withKey(key)), 503, "DATABASE_UNAVAILABLE"))
    } finally {
      await other.unsafe("ALTER TABLE api_keys_away RENAME TO api_keys")
      fault.healed()
    }
    await server.admin("/v1/admin/breakers/database", { method: "POST", body: JSON.stringify({ action: "close" }) })
    expect((await server.fetch("/v1/sessions", withKey(key))).status).toBe(200)
    await fault.recovered()
  })

  test("when the memory table is gone, memory answers 503 MEMORY_UNAVAILABLE and sessions still serve", async () => {
    const created = await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))
    const sessionId = ((await created.json()) as { id: string }).id
    const fault = faultMatrix(server, "memory-table-gone", { broken: "the memory store", how: "another session renames the `memory` table away; `GET .../memory/{key}`", dependency: "memory" })
    await other.unsafe("ALTER TABLE memory RENAME TO memory_away")
    try {
      await fault.saw(await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/memory/k`, withKey(key)), 503, "MEMORY_UNAVAILABLE"))
      expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key))).status).toBe(200)
    } finally {
      await other.unsafe("ALTER TABLE memory_away RENAME TO memory")
    }
    await fault.recovered()
  })
})
