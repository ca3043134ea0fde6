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
import { faultMatrix } from "../support/faultMatrix.js"

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

  const notFound = async () => {
    const missing = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key))
    return ((await missing.json()) as { error_id: string }).error_id
  }
  const ledgerRows = async (errorId: string) => {
    const rows: Array<{ n: number }> = await withConnection(database.url, (sql) => sql`SELECT count(*)::int AS n FROM errors WHERE error_id = ${errorId}`)
    return rows[0]?.n ?? 0
  }
  /** A 404 whose ledger row is stored: the ledger writes one batch after another, so it is idle after. */
  const ledgerSettled = async () => {
    const errorId = await notFound()
    const deadline = Date.now() + 4000
    while ((await ledgerRows(errorId)) === 0 && Date.now() < deadline) await Bun.sleep(20)
    expect(await ledgerRows(errorId)).toBe(1)
  }

  test("a message whose commit was not acknowledged is answered 201 once, with the seq it was stored with", async () => {
    // The append's command tag (one statement whose result is a SELECT), sent after its commit, on
    // the connection that sent the append (its first on this server, so its text is sent).
    const fault = faultMatrix(server, "postgres-lost-reply", { broken: "the reply to a committed message append", how: "the TCP proxy cuts the connection that carries the append's command tag, after its commit; `POST .../messages`", dependency: "database" })
    const lost = proxy.loseReply({ request: "INSERT INTO messages", reply: "SELECT 1" })
    const response = await server.fetch(
      `/v1/sessions/${sessionId}/messages`,
      withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "exactly once" }) })
    )
    const text = await response.text()
    // The fault really happened: the first attempt's reply was cut.
    expect(await Promise.race([lost.then(() => true), Bun.sleep(0).then(() => false)])).toBe(true)
    expect(`${response.status} ${text}`).toStartWith("201 ")
    await fault.saw(response)
    await fault.recovered()
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

  test("a group-committed batch whose commit was not acknowledged: every post is answered 201 once, with the seq it was stored with", async () => {
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))
    const batchSession = ((await created.json()) as { id: string }).id
    const splitsBefore = await batchSplits(server)
    // The batch's one statement (its text starts `WITH input`) answers a SELECT of its rows.
    const lost = proxy.loseReply({ request: "WITH input", reply: "SELECT " })
    const responses = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      server.fetch(
        `/v1/sessions/${batchSession}/messages`,
        withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: `batched ${i}` }) })
      )))
    const texts = await Promise.all(responses.map((response) => response.text()))
    expect(await Promise.race([lost.then(() => true), Bun.sleep(0).then(() => false)])).toBe(true)
    expect(responses.map((response, i) => `${response.status} ${response.status === 201 ? "" : texts[i]}`)).toEqual(Array(12).fill("201 "))
    const messages = texts.map((text) => JSON.parse(text) as { id: string; seq: number })
    const rows = await withConnection(database.url, (sql) =>
      sql`SELECT id, seq FROM messages WHERE tenant_id = ${tenant.id} AND session_id = ${batchSession} ORDER BY seq` as Promise<Array<{ id: string; seq: number }>>)
    expect(rows.map((row) => Number(row.seq))).toEqual(Array.from({ length: 12 }, (_, i) => i + 1))
    const told = new Map(messages.map((message) => [message.id, message.seq]))
    for (const row of rows) expect(told.get(row.id)).toBe(Number(row.seq))
    // The batch's own retry recognised its rows; it was not sent back row by row.
    expect(await batchSplits(server)).toBe(splitsBefore)
  })

  test("a session whose commit was not acknowledged is answered 201 once, not 409 for the request's own row", async () => {
    // Nothing else inserts meanwhile: the ledger is idle, and reads have other command tags.
    await ledgerSettled()
    const lost = proxy.loseReply({ reply: "INSERT 0 1" })
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "once" }) }))
    const text = await response.text()
    expect(await Promise.race([lost.then(() => true), Bun.sleep(0).then(() => false)])).toBe(true)
    expect(`${response.status} ${text}`).toStartWith("201 ")
    const created = JSON.parse(text) as { id: string; title: string }
    const rows = await withConnection(database.url, (sql) =>
      sql`SELECT id FROM sessions WHERE tenant_id = ${tenant.id} AND title = 'once'` as Promise<Array<{ id: string }>>)
    expect(rows.map((row) => row.id)).toEqual([created.id])
    // A client-chosen id that exists is still a conflict.
    const again = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ id: created.id, title: "once" }) }))
    expect(again.status).toBe(409)
    expect(((await again.json()) as { code: string }).code).toBe("SESSION_ALREADY_EXISTS")
  })

  test("a ledger row whose commit was not acknowledged is kept once, not reported dropped", async () => {
    await ledgerSettled()
    const droppedBefore = await droppedRows(server)
    const lost = proxy.loseReply({ reply: "INSERT 0 1" })
    const first = await notFound()
    await lost
    // The ledger writes one batch after another: once a later row is stored, the first batch's
    // retry is over, whichever way it went.
    const later = await notFound()
    const deadline = Date.now() + 4000
    while ((await ledgerRows(later)) === 0 && Date.now() < deadline) await Bun.sleep(20)
    expect(await ledgerRows(later)).toBe(1)
    // Stored by the first attempt; the retry neither failed on it nor added a second row.
    expect(await ledgerRows(first)).toBe(1)
    expect(await droppedRows(server)).toBe(droppedBefore)
  })
})

const droppedRows = async (server: TestServer): Promise<number> => {
  const text = await (await server.admin("/metrics")).text()
  return Number(/^bulwark_ledger_dropped_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 0)
}

const batchSplits = async (server: TestServer): Promise<number> => {
  const text = await (await server.admin("/metrics")).text()
  return Number(/^bulwark_write_batch_splits_total\{[^}]*write="messages.append"[^}]*\} (\S+)$/m.exec(text)?.[1] ?? 0)
}
