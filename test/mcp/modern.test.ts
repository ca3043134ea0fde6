/**
 * The 2026-07-28 era by requests written from the revision's text (docs/specification/2026-07-28):
 * no initialize and no session, `_meta` on every request, the mirrored headers, `resultType`,
 * `server/discover`, -32022 for a version not spoken here, 405 for GET and DELETE.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { ledgerRecord, startServer, type TestServer } from "../support/server.js"

let server: TestServer
let tenant: { id: string; api_key: string }

const VERSION = "2026-07-28"
const meta = (version = VERSION) => ({
  "io.modelcontextprotocol/protocolVersion": version,
  "io.modelcontextprotocol/clientInfo": { name: "ExampleClient", version: "1.0.0" },
  "io.modelcontextprotocol/clientCapabilities": {}
})

interface Rpc {
  readonly jsonrpc: "2.0"
  readonly id: string | number | null
  readonly result?: Record<string, any>
  readonly error?: { readonly code: number; readonly message: string; readonly data?: any }
}

/** A request as a client of the revision sends it: the body and its mirrored headers. */
const request = (method: string, params: Record<string, unknown> = {}, options: { id?: number | string; headers?: Record<string, string>; version?: string } = {}) => {
  const name = method === "tools/call" ? params["name"] : method === "resources/read" ? params["uri"] : undefined
  return server.fetch("/mcp", {
    method: "POST",
    headers: {
      authorization: `Bearer ${tenant.api_key}`,
      accept: "application/json, text/event-stream",
      "content-type": "application/json",
      "mcp-protocol-version": options.version ?? VERSION,
      "mcp-method": method,
      ...(typeof name === "string" ? { "mcp-name": name } : {}),
      ...options.headers
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: options.id ?? 1, method, params: { ...params, _meta: meta(options.version) } })
  })
}

const rpc = async (response: Response, status = 200): Promise<Rpc> => {
  expect(response.status).toBe(status)
  expect(response.headers.get("mcp-session-id")).toBeNull()
  return (await response.json()) as Rpc
}

const tool = async (name: string, args: Record<string, unknown>) => {
  const body = await rpc(await request("tools/call", { name, arguments: args }))
  expect(body.result!["resultType"]).toBe("complete")
  return body.result!
}

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
})
afterAll(() => server.close())

describe("2026-07-28: stateless requests", () => {
  test("server/discover answers the supported versions, capabilities and server info, with caching hints", async () => {
    const body = await rpc(await request("server/discover", {}, { id: "discover-1" }))
    expect(body.id).toBe("discover-1")
    expect(body.result).toMatchObject({
      resultType: "complete",
      supportedVersions: expect.arrayContaining(["2026-07-28", "2025-11-25"]),
      capabilities: { tools: {}, resources: { subscribe: true } },
      _meta: { "io.modelcontextprotocol/serverInfo": { name: "bulwark" } },
      cacheScope: "private"
    })
    expect(body.result!["ttlMs"]).toBeGreaterThanOrEqual(0)
  })

  test("tools/list without initialize: the same ten tools, with resultType and caching hints", async () => {
    const body = await rpc(await request("tools/list"))
    expect(body.result!["tools"]).toHaveLength(10)
    expect(body.result).toMatchObject({ resultType: "complete", cacheScope: "private" })
  })

  test("tools/call works on any request with no session: create, post, read", async () => {
    const session = (await tool("create_session", { title: "stateless" }))["structuredContent"]
    const posted = await tool("post_message", { session_id: session.id, agent_id: "a", content: "hi" })
    expect(posted).toMatchObject({ isError: false, structuredContent: { seq: 1, content: "hi" } })
    const read = await rpc(await request("resources/read", { uri: `bulwark://sessions/${session.id}/messages` }))
    expect(read.result).toMatchObject({ resultType: "complete", ttlMs: 0 })
    expect(JSON.parse(read.result!["contents"][0].text).data).toEqual([posted["structuredContent"]])
  })

  test("a failing tool is isError with the problem object, ledgered as mcp", async () => {
    const result = await tool("get_session", { session_id: crypto.randomUUID() })
    expect(result).toMatchObject({ isError: true, structuredContent: { code: "SESSION_NOT_FOUND", status: 404 } })
    const row = await ledgerRecord(server, result["structuredContent"].error_id)
    expect(row).toMatchObject({ type: "mcp", route: "mcp tools/call get_session", tenant_id: tenant.id })
  })

  test("an unknown tool is -32602; a missing resource is -32602 with the problem in data", async () => {
    const unknown = await rpc(await request("tools/call", { name: "nope", arguments: {} }))
    expect(unknown.error!.code).toBe(-32602)
    const missing = await rpc(await request("resources/read", { uri: `bulwark://sessions/${crypto.randomUUID()}/messages` }))
    expect(missing.error).toMatchObject({ code: -32602, data: { code: "SESSION_NOT_FOUND" } })
  })

  test("an unknown method is 404 with -32601, and ping (removed in this revision) is unknown too", async () => {
    for (const method of ["sessions/explode", "ping"]) {
      const body = await rpc(await request(method, {}, { id: 7 }), 404)
      expect(body).toMatchObject({ id: 7, error: { code: -32601 } })
    }
  })
})

describe("2026-07-28: the rules on each request", () => {
  test("a version not spoken here is 400 with -32022 listing the supported versions", async () => {
    const body = await rpc(await request("tools/list", {}, { version: "1900-01-01" }), 400)
    expect(body.error).toMatchObject({ code: -32022, data: { requested: "1900-01-01", supported: expect.arrayContaining(["2026-07-28"]) } })
  })

  test("missing clientCapabilities in _meta is 400 with -32602", async () => {
    const response = await server.fetch("/mcp", {
      method: "POST",
      headers: { authorization: `Bearer ${tenant.api_key}`, accept: "application/json, text/event-stream", "content-type": "application/json", "mcp-protocol-version": VERSION, "mcp-method": "tools/list" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: { "io.modelcontextprotocol/protocolVersion": VERSION } } })
    })
    expect((await rpc(response, 400)).error!.code).toBe(-32602)
  })

  test("headers that do not match the body are 400 with -32020 (HeaderMismatch)", async () => {
    expect((await rpc(await request("tools/list", {}, { headers: { "mcp-method": "tools/call" } }), 400)).error!.code).toBe(-32020)
    expect((await rpc(await request("tools/list", {}, { headers: { "mcp-protocol-version": "2025-11-25" } }), 400)).error!.code).toBe(-32020)
    expect((await rpc(await request("tools/call", { name: "get_session", arguments: {} }, { headers: { "mcp-name": "delete_session" } }), 400)).error!.code).toBe(-32020)
  })

  test("Mcp-Name may carry the base64 sentinel form", async () => {
    const encoded = `=?base64?${Buffer.from("list_sessions").toString("base64")}?=`
    const body = await rpc(await request("tools/call", { name: "list_sessions", arguments: {} }, { headers: { "mcp-name": encoded } }))
    expect(body.result!["isError"]).toBe(false)
  })

  test("an Mcp-Session-Id header is ignored and none is minted", async () => {
    const body = await rpc(await request("tools/list", {}, { headers: { "mcp-session-id": crypto.randomUUID() } }))
    expect(body.result!["tools"]).toHaveLength(10)
  })

  test("GET and DELETE on /mcp are 405", async () => {
    for (const method of ["GET", "DELETE"]) {
      const response = await server.fetch("/mcp", { method, headers: { authorization: `Bearer ${tenant.api_key}`, "mcp-protocol-version": VERSION } })
      expect(response.status).toBe(405)
      await response.text()
    }
  })

  test("without credentials: 401 problem with WWW-Authenticate: Bearer", async () => {
    const response = await server.fetch("/mcp", {
      method: "POST",
      headers: { accept: "application/json, text/event-stream", "content-type": "application/json", "mcp-protocol-version": VERSION, "mcp-method": "tools/list" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: meta() } })
    })
    expect(response.status).toBe(401)
    expect(response.headers.get("www-authenticate")).toStartWith("Bearer")
    expect(((await response.json()) as { code: string }).code).toBe("AUTH_MISSING")
  })
})
