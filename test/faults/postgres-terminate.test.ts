/**
 * PostgreSQL ends Bulwark's connections under it (`pg_terminate_backend`, as an operator or a failover
 * does): a lost connection is retried on a new one (SPEC §8), so clients never see a 500, and the
 * pool does not keep handing out the dead ones.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { databaseNameOf, requireSharedPostgres, startServerOn, terminateBulwarkConnections } from "../support/pgFaults.js"
import { cloneDatabase, type TestDatabase } from "../support/postgres.js"
import type { TestServer } from "../support/server.js"
import { withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = await requireSharedPostgres("the pg_terminate_backend fault tests")

describe.skipIf(!available)("PostgreSQL connections terminated under the server", () => {
  let database: TestDatabase
  let server: TestServer
  let tenant: { id: string; api_key: string }
  let sessionId: string

  beforeAll(async () => {
    database = await cloneDatabase()
    server = await startServerOn(database.url)
    tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "kept" }) }))
    sessionId = ((await created.json()) as { id: string }).id
  })
  afterAll(async () => {
    await server?.close()
    await database?.drop()
  })

  /** A mix of reads and writes, several at once, so the pool holds more than one connection. */
  const burst = () =>
    Promise.all([
      ...Array.from({ length: 4 }, () => server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))),
      ...Array.from({ length: 4 }, (_, index) =>
        server.fetch(
          `/v1/sessions/${sessionId}/messages`,
          withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "writer", content: `m${index}` }) })
        )),
      // Under an Idempotency-Key the write and its stored answer are one transaction.
      server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}", headers: { "idempotency-key": crypto.randomUUID() } })),
      server.fetch("/v1/sessions?limit=5", withKey(tenant.api_key)),
      server.fetch(`/v1/sessions/${sessionId}/messages?limit=5`, withKey(tenant.api_key))
    ])

  const statusesOf = async (responses: ReadonlyArray<Response>) =>
    Promise.all(responses.map(async (response) => {
      const text = await response.text()
      return response.status >= 500 ? `${response.status} ${text}` : response.status
    }))

  test("after every Bulwark connection is terminated, the next requests all succeed, five times over", async () => {
    let posted = 0
    const fault = faultMatrix(server, "postgres-terminated", { broken: "every Bulwark connection to PostgreSQL", how: "`pg_terminate_backend` of each (as an operator or a failover does), five rounds; a burst of 11 reads and writes after each", dependency: "database" })
    for (let round = 0; round < 5; round++) {
      // Connections in the pool first, so there is something to kill.
      expect(await statusesOf(await burst())).toEqual([200, 200, 200, 200, 201, 201, 201, 201, 201, 200, 200])
      posted += 4
      expect(await terminateBulwarkConnections(databaseNameOf(database.url))).toBeGreaterThan(0)
      fault.healed()
      const after = await burst()
      for (const response of after) await fault.saw(response)
      expect(await statusesOf(after)).toEqual([200, 200, 200, 200, 201, 201, 201, 201, 201, 200, 200])
      posted += 4
    }
    await fault.recovered()
    // Every acknowledged message is there once, and seq has no gap.
    const listed = await server.fetch(`/v1/sessions/${sessionId}/messages?limit=200`, withKey(tenant.api_key))
    const messages = ((await listed.json()) as { data: Array<{ seq: number }> }).data
    expect(messages.map((message) => message.seq)).toEqual(Array.from({ length: posted }, (_, index) => index + 1))
  })

  test("nothing of it reached the ledger as a failure: no 500, no 503", async () => {
    for (const code of ["INTERNAL_ERROR", "DATABASE_UNAVAILABLE"]) {
      const response = await server.admin(`/v1/admin/errors?code=${code}`)
      expect(response.status).toBe(200)
      expect(((await response.json()) as { data: Array<unknown> }).data).toEqual([])
    }
  })

  test("connections terminated while requests are in flight: every answer is a success or an honest 503, never a 500", async () => {
    const inFlight = burst()
    await Bun.sleep(1)
    await terminateBulwarkConnections(databaseNameOf(database.url))
    const statuses = await statusesOf(await inFlight)
    for (const status of statuses) {
      if (typeof status === "string") expect(status).toStartWith("503 ")
      else expect([200, 201]).toContain(status)
    }
    expect(await statusesOf(await burst())).toEqual([200, 200, 200, 200, 201, 201, 201, 201, 201, 200, 200])
  })
})
