/**
 * The HTTP edge of `/mcp` and the session rules of the 2025-11-25 era, by raw requests: bad input is
 * answered (never a 500), the same doors as REST (credentials, rate limits, Origin), and sessions
 * are bound to their key and bounded in number and idle time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { expectProblem, ledgerRecord, startServer, type TestServer } from "../support/server.js"
import { connect } from "./client.js"

let server: TestServer
let tenant: { id: string; api_key: string }

const ACCEPT = "application/json, text/event-stream"

const post = (body: unknown, headers: Record<string, string> = {}, credential: string | null = tenant.api_key) =>
  server.fetch("/mcp", {
    method: "POST",
    headers: {
      accept: ACCEPT,
      "content-type": "application/json",
      ...(credential === null ? {} : { authorization: `Bearer ${credential}` }),
      ...headers
    },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

const initialize = (id: number | string = 1) => ({
  jsonrpc: "2.0",
  id,
  method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1" } }
})

/** Opens a session with raw requests and returns its id. */
const openSession = async (credential = tenant.api_key): Promise<string> => {
  const response = await post(initialize(), {}, credential)
  expect(response.status).toBe(200)
  const sessionId = response.headers.get("mcp-session-id")!
  expect(sessionId).toMatch(/^[0-9a-f-]{36}$/)
  await response.text()
  const initialized = await post({ jsonrpc: "2.0", method: "notifications/initialized" }, { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" }, credential)
  expect(initialized.status).toBe(202)
  return sessionId
}

const inSession = (sessionId: string, body: unknown, credential = tenant.api_key) =>
  post(body, { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" }, credential)

const rpcError = async (response: Response, status: number, code: number, id: unknown) => {
  expect(response.status).toBe(status)
  const body = (await response.json()) as { jsonrpc: string; id: unknown; error: { code: number; message: string } }
  expect(body.jsonrpc).toBe("2.0")
  expect(body.id).toEqual(id)
  expect(body.error.code).toBe(code)
  return body.error
}

beforeAll(async () => {
  server = await startServer({ mcp: { sessions: { perKey: 2, idleMillis: 300 }, sweepEvery: "50 millis" } })
  tenant = await server.createTenant()
})
afterAll(() => server.close())

describe("the same doors as REST", () => {
  test("no credential: 401 AUTH_MISSING problem with WWW-Authenticate: Bearer, ledgered as mcp", async () => {
    const problem = await expectProblem(await post(initialize(), {}, null), 401, "AUTH_MISSING")
    expect(await ledgerRecord(server, problem.error_id)).toMatchObject({ type: "mcp", route: "POST /mcp", code: "AUTH_MISSING" })
    await expectProblem(await post(initialize(), {}, "bk_not-a-key"), 401, "AUTH_INVALID")
  })

  test("the SDK client cannot connect without a valid credential", async () => {
    await expect(connect(server, "bk_wrong")).rejects.toThrow()
  })

  test("a foreign Origin is refused with 403 (DNS rebinding); the server's own loopback origin is served", async () => {
    await expectProblem(await post(initialize(), { origin: "http://evil.example.com" }), 403, "FORBIDDEN")
    const own = await post(initialize(), { origin: new URL(server.url).origin })
    expect(own.status).toBe(200)
    await own.text()
  })

  test("every response carries X-Request-Id, and counted ones RateLimit-*", async () => {
    const response = await post(initialize(), { "x-request-id": "mcp-req-1" })
    expect(response.headers.get("x-request-id")).toBe("mcp-req-1")
    expect(Number(response.headers.get("ratelimit-limit"))).toBeGreaterThan(0)
    await response.text()
  })
})

describe("bad input is answered, never a 500", () => {
  test("malformed JSON is -32700 with a null id", async () => {
    await rpcError(await post("{not json"), 400, -32700, null)
  })

  test("a batch array is -32600", async () => {
    await rpcError(await post([initialize(1), initialize(2)]), 400, -32600, null)
  })

  test("a body over 1 MiB is 413 PAYLOAD_TOO_LARGE", async () => {
    await expectProblem(await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping", params: { pad: "x".repeat(1024 * 1024) } })), 413, "PAYLOAD_TOO_LARGE")
  })

  test("a body that is not application/json is 415", async () => {
    await expectProblem(await post("{}", { "content-type": "text/plain" }), 415, "UNSUPPORTED_MEDIA_TYPE")
  })

  test("an Accept without text/event-stream is 406", async () => {
    const response = await post(initialize(), { accept: "application/json" })
    expect(response.status).toBe(406)
    await response.text()
  })

  test("a tool call before initialize is 400 with the request's id", async () => {
    await rpcError(await post({ jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: "get_session", arguments: {} } }), 400, -32000, 9)
  })

  test("an unknown session id is 404", async () => {
    await rpcError(await inSession(crypto.randomUUID(), { jsonrpc: "2.0", id: 3, method: "tools/list" }), 404, -32001, 3)
  })

  test("an unknown method is -32601 with the request's id", async () => {
    const sessionId = await openSession()
    await rpcError(await inSession(sessionId, { jsonrpc: "2.0", id: "m-1", method: "sessions/explode" }), 200, -32601, "m-1")
  })

  test("GET or DELETE without a session, or another method, is 405", async () => {
    for (const method of ["GET", "DELETE", "PUT"]) {
      const response = await server.fetch("/mcp", { method, headers: { authorization: `Bearer ${tenant.api_key}`, accept: ACCEPT } })
      expect(response.status).toBe(405)
      expect(response.headers.get("allow")).toBe("POST")
      await response.text()
    }
  })
})

describe("sessions", () => {
  test("DELETE ends a session: its id is 404 from then on", async () => {
    const sessionId = await openSession()
    const deleted = await server.fetch("/mcp", {
      method: "DELETE",
      headers: { authorization: `Bearer ${tenant.api_key}`, "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" }
    })
    expect(deleted.status).toBe(200)
    await rpcError(await inSession(sessionId, { jsonrpc: "2.0", id: 4, method: "tools/list" }), 404, -32001, 4)
  })

  test("a session belongs to the key that opened it: another key gets 404", async () => {
    const sessionId = await openSession()
    const other = await server.createTenant()
    await rpcError(await inSession(sessionId, { jsonrpc: "2.0", id: 5, method: "tools/list" }, other.api_key), 404, -32001, 5)
    const mine = await inSession(sessionId, { jsonrpc: "2.0", id: 6, method: "tools/list" })
    expect(mine.status).toBe(200)
    await mine.text()
  })

  test("a key holds at most its quota of sessions: opening one more closes its least recently used", async () => {
    const own = await server.createTenant()
    const first = await openSession(own.api_key)
    const second = await openSession(own.api_key)
    const third = await openSession(own.api_key)
    await rpcError(await inSession(first, { jsonrpc: "2.0", id: 7, method: "tools/list" }, own.api_key), 404, -32001, 7)
    for (const kept of [second, third]) {
      const response = await inSession(kept, { jsonrpc: "2.0", id: 8, method: "tools/list" }, own.api_key)
      expect(response.status).toBe(200)
      await response.text()
    }
  })

  test("an idle session is closed (a client that never sends DELETE holds nothing for long)", async () => {
    const sessionId = await openSession()
    const deadline = Date.now() + 5_000
    let status = 200
    while (status === 200 && Date.now() < deadline) {
      await Bun.sleep(100)
      const response = await inSession(sessionId, { jsonrpc: "2.0", id: 10, method: "ping" })
      status = response.status
      await response.text()
      // Requests keep it alive; stop asking and let it idle out.
      if (status === 200) await Bun.sleep(400)
    }
    expect(status).toBe(404)
  })

  test("a session with an open GET stream is not idle", async () => {
    const sessionId = await openSession()
    const stream = await server.fetch("/mcp", {
      method: "GET",
      headers: { authorization: `Bearer ${tenant.api_key}`, accept: "text/event-stream", "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" }
    })
    expect(stream.status).toBe(200)
    expect(stream.headers.get("content-type")).toBe("text/event-stream")
    await Bun.sleep(700)
    const response = await inSession(sessionId, { jsonrpc: "2.0", id: 11, method: "ping" })
    expect(response.status).toBe(200)
    await response.text()
    await stream.body?.cancel()
  })
})

describe("rate limits", () => {
  test("past the key's limit: 429 RATE_LIMITED with Retry-After", async () => {
    const limited = await startServer({ rateLimit: { limit: 2, windowMillis: 60_000 } })
    try {
      const own = await limited.createTenant()
      const send = () =>
        limited.fetch("/mcp", {
          method: "POST",
          headers: { accept: ACCEPT, "content-type": "application/json", authorization: `Bearer ${own.api_key}` },
          body: JSON.stringify(initialize())
        })
      for (let i = 0; i < 2; i++) await (await send()).text()
      const problem = await expectProblem(await send(), 429, "RATE_LIMITED")
      expect(problem.retry_after_seconds).toBeGreaterThan(0)
    } finally {
      await limited.close()
    }
  })
})
