/**
 * The connection drops after PostgreSQL committed a write but before Bulwark read the reply (a
 * failover or a network cut at the wrong moment). Bulwark retries a lost connection (SPEC §8), so
 * the retry meets the row its own first attempt wrote: that must be recognised as this request's
 * write (201, once), never a 500 for "its own" unique violation, nor a second copy.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { requireSharedPostgres, startServerOn, viaProxy, withConnection } from "../support/pgFaults.js"
import { cloneDatabase, type TestDatabase } from "../support/postgres.js"
import { type TestServer, withKey } from "../support/server.js"
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js"

const available = await requireSharedPostgres("the PostgreSQL lost-reply fault tests")

describe.skipIf(!available)("a write's reply lost after its commit", () => {
  let database: TestDatabase
  let proxy: TcpProxy
  let server: TestServer
  let tenant: { id: string; api_key: string }
  let sessionId: string

  beforeAll(async () => {
    database = await cloneDatabase()
    const direct = new URL(database.url)
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) })
    server = await startServerOn(viaProxy(database.url, proxy))
    tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))
    sessionId = ((await created.json()) as { id: string }).id
  })
  afterAll(async () => {
    await server?.close()
    await proxy?.close()
    await database?.drop()
  })

  test("a message whose commit was not acknowledged is answered 201 once, with the seq it was stored with", async () => {
    // The append's command tag (one statement whose result is a SELECT), sent after its commit.
    const lost = proxy.loseReply({ request: "INSERT INTO messages", reply: "SELECT 1" })
    const response = await server.fetch(
      `/v1/sessions/${sessionId}/messages`,
      withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "exactly once" }) })
    )
    const text = await response.text()
    // The fault really happened: the first attempt's reply was cut.
    expect(await Promise.race([lost.then(() => true), Bun.sleep(0).then(() => false)])).toBe(true)
    expect(`${response.status} ${text}`).toStartWith("201 ")
    const message = JSON.parse(text) as { id: string; seq: number; content: string }
    expect(message).toMatchObject({ seq: 1, content: "exactly once" })
    // Read straight from the database: one row, the one the client was told about.
    const rows = await withConnection(database.url, (sql) =>
      sql`SELECT id, seq FROM messages WHERE tenant_id = ${tenant.id} AND session_id = ${sessionId}` as Promise<Array<{ id: string; seq: number }>>)
    expect(rows.map((row) => [row.id, Number(row.seq)])).toEqual([[message.id, 1]])
    const next = await server.fetch(
      `/v1/sessions/${sessionId}/messages`,
      withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "next" }) })
    )
    expect(((await next.json()) as { seq: number }).seq).toBe(2)
  })

  test("a ledger row whose commit was not acknowledged is kept once, not reported dropped", async () => {
    const droppedBefore = await droppedRows(server)
    const lost = proxy.loseReply({ request: "INSERT INTO errors", reply: "INSERT 0 1" })
    const notFound = async () => {
      const missing = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key))
      return ((await missing.json()) as { error_id: string }).error_id
    }
    const rowsOf = async (errorId: string) => {
      const rows: Array<{ n: number }> = await withConnection(database.url, (sql) => sql`SELECT count(*)::int AS n FROM errors WHERE error_id = ${errorId}`)
      return rows[0]?.n ?? 0
    }
    const first = await notFound()
    await lost
    // The ledger writes one batch after another: once a later row is stored, the first batch's
    // retry is over, whichever way it went.
    const later = await notFound()
    const deadline = Date.now() + 5000
    while ((await rowsOf(later)) === 0 && Date.now() < deadline) await Bun.sleep(20)
    expect(await rowsOf(later)).toBe(1)
    // Stored by the first attempt; the retry neither failed on it nor added a second row.
    expect(await rowsOf(first)).toBe(1)
    expect(await droppedRows(server)).toBe(droppedBefore)
  })
})

const droppedRows = async (server: TestServer): Promise<number> => {
  const text = await (await server.admin("/metrics")).text()
  return Number(/^bulwark_ledger_dropped_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 0)
}
