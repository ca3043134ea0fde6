/**
 * An MCP request has the REST request's deadline (BULWARK_REQUEST_TIMEOUT_MS): held past it by a
 * stalled dependency (a paused Redis of the test's own) it is 504 `TIMEOUT`, ledgered as mcp.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultCacheResilience } from "../../layers/cache/Cache.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

const available = requireRedisServer()
const DEADLINE_MILLIS = 150
const PAUSE_MILLIS = 600

describe.skipIf(!available)("the MCP request deadline", () => {
  let redis: OwnRedis
  let server: TestServer
  let apiKey: string
  let sessionId: string

  beforeAll(async () => {
    redis = await startOwnRedis()
    // Redis calls may wait far longer than the request may: only the request deadline can end them.
    server = await startServer({
      redisUrl: redis.url,
      requestTimeoutMillis: DEADLINE_MILLIS,
      cacheResilience: { breaker: { ...defaultCacheResilience.breaker, callTimeout: "10 seconds", slowCallDuration: "10 seconds" } }
    })
    apiKey = (await server.createTenant()).api_key
    sessionId = ((await (await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: "{}" }))).json()) as { id: string }).id
  }, 30_000)
  afterAll(async () => {
    await server.close()
    await redis.stop()
  })

  const getSession = () =>
    server.fetch("/mcp", {
      method: "POST",
      headers: {
        authorization: `Bearer ${apiKey}`,
        accept: "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "get_session"
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: {
          name: "get_session",
          arguments: { session_id: sessionId },
          _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} }
        }
      })
    })

  test("a tools/call held by a paused Redis past the deadline is 504 TIMEOUT, ledgered; the next call is served", async () => {
    const before = await getSession()
    expect(before.status).toBe(200)
    await before.text()
    expect(await redis.cli("CLIENT", "PAUSE", String(PAUSE_MILLIS), "ALL")).toBe("OK")
    const pauseOver = Date.now() + PAUSE_MILLIS
    // Not timed: a call that outlived the pause would have been served, so the 504 is the deadline's, however busy the machine.
    const problem = await expectProblem(await getSession(), 504, "TIMEOUT")
    expect(await ledgerRecord(server, problem.error_id)).toMatchObject({ type: "mcp", route: "POST /mcp", code: "TIMEOUT", status: 504 })
    await Bun.sleep(Math.max(0, pauseOver - Date.now()) + 20)
    const after = await getSession()
    expect(after.status).toBe(200)
    expect(((await after.json()) as { result: { isError: boolean } }).result.isError).toBe(false)
  })
})
