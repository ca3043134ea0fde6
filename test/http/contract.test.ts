/**
 * The document tells the truth (SPEC §2, §4): it compiles under JSON Schema 2020-12, names its
 * servers and summarises every operation; the server refuses what the document does not allow
 * (unknown fields, malformed integers and dates), answers a known path's other methods with 405 and
 * `Allow`, and keeps secrets and authenticated answers out of caches. Every response below also
 * passes the harness's contract check (test/support/contract.ts), which this file shows can fail.
 */
import Ajv2020 from "ajv/dist/2020.js"
import addFormats from "ajv-formats"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { checkResponse, ContractViolation } from "../support/contract.js"
import { openEvents } from "../support/sse.js"
import { ledgerRecord, expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let tenant: { id: string; api_key: string; api_key_id: string }
let document: Record<string, any>
let sessionId: string

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
  document = (await (await server.fetch("/openapi.json")).json()) as Record<string, any>
  sessionId = ((await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }).id
})
afterAll(() => server.close())

const operations = () =>
  Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation }))
  )

describe("the document", () => {
  test("compiles under JSON Schema 2020-12 with formats: every schema, no duplicate $id", () => {
    const ajv = new Ajv2020({ strict: false })
    addFormats(ajv)
    ajv.addSchema(document, "doc")
    for (const name of Object.keys(document.components.schemas)) expect(() => ajv.getSchema(`doc#/components/schemas/${name}`)).not.toThrow()
    const ids: Array<string> = []
    JSON.stringify(document, (key, value) => {
      if (key === "$id") ids.push(value)
      return value
    })
    expect(ids).toEqual([])
  })

  test("has servers, a summary on every operation, and 405 among every operation's statuses", () => {
    expect(document.servers).toEqual([{ url: "/", description: expect.any(String) }])
    for (const { method, operation, path } of operations()) {
      expect({ path, method, summary: typeof operation.summary === "string" && operation.summary.length > 0 }).toEqual({ path, method, summary: true })
      expect(Object.keys(operation.responses)).toContain("405")
    }
  })

  test("/health is usable without credentials; integers and dates are typed with their bounds", () => {
    expect(document.paths["/health"].get.security).toContainEqual({})
    const parameter = (path: string, name: string) =>
      (document.paths[path].get.parameters as Array<{ name: string; schema: unknown }>).find((p) => p.name === name)?.schema
    expect(parameter("/v1/sessions", "limit")).toEqual({ type: "integer", minimum: 1, maximum: 200 })
    expect(parameter("/v1/sessions/{id}/messages", "after")).toMatchObject({ type: "integer", minimum: 0 })
    expect(parameter("/v1/sessions/{id}/events", "last-event-id")).toMatchObject({ type: "integer", minimum: 0 })
    expect(parameter("/v1/admin/errors", "limit")).toEqual({ type: "integer", minimum: 1, maximum: 500 })
    expect(parameter("/v1/admin/errors", "since")).toEqual({ type: "string", format: "date-time" })
    expect(parameter("/v1/admin/errors/stats", "since")).toEqual({ type: "string", format: "date-time" })
  })

  test("the contract check fails a response the document does not describe", async () => {
    const headers = { "x-request-id": "r1", "x-trace-id": "0".repeat(32), "content-type": "application/json" }
    const session = { id: sessionId, title: null, metadata: {}, created_at: "2026-01-01T00:00:00.000Z", updated_at: "2026-01-01T00:00:00.000Z" }
    const check = (response: Response, method = "GET", path = `/v1/sessions/${sessionId}`) => checkResponse(server.url, method, path, response)
    await check(new Response(JSON.stringify(session), { status: 200, headers }))
    await expect(check(new Response(JSON.stringify({ ...session, extra: 1 }), { status: 200, headers }))).rejects.toThrow(ContractViolation)
    await expect(check(new Response(JSON.stringify({ ...session, id: "x" }), { status: 200, headers }))).rejects.toThrow(/format/)
    await expect(check(new Response(JSON.stringify(session), { status: 202, headers }))).rejects.toThrow(/not documented/)
    await expect(check(new Response(JSON.stringify(session), { status: 200, headers: { ...headers, "x-trace-id": "nope" } }))).rejects.toThrow(/x-trace-id/i)
    await expect(check(new Response(JSON.stringify(session), { status: 200, headers: { "x-trace-id": "0".repeat(32) } }))).rejects.toThrow(/x-request-id/i)
    await expect(check(new Response(JSON.stringify(session), { status: 200, headers: { ...headers, allow: "GET" } }))).rejects.toThrow(/allow/i)
    await expect(check(new Response("", { status: 204, headers }), "POST", "/v1/auth/revoke")).resolves.toBeInstanceOf(Response)
    await expect(check(new Response("{}", { status: 204, headers }), "POST", "/v1/auth/revoke")).rejects.toThrow(/no body/)
  })
})

describe("unknown fields are refused with a pointer each", () => {
  const expectUnknown = async (response: Response, pointers: Array<string>) => {
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors?.filter((issue) => issue.detail === "is not a field of this request").map((issue) => issue.pointer).sort()).toEqual(pointers.sort())
  }

  test("on every route that takes a body", async () => {
    const post = (path: string, body: unknown, method = "POST") => server.fetch(path, withKey(tenant.api_key, { method, body: JSON.stringify(body) }))
    const asAdmin = (path: string, body: unknown) => server.admin(path, { method: "POST", body: JSON.stringify(body) })
    await expectUnknown(await post("/v1/sessions", { title: "t", titel: "t", colour: 1 }), ["/titel", "/colour"])
    await expectUnknown(await post(`/v1/sessions/${sessionId}/messages`, { agent_id: "a", contnet: "hi", content: "hi" }), ["/contnet"])
    await expectUnknown(await post(`/v1/sessions/${sessionId}/memory/k`, { value: 1, ttl: 5 }, "PUT"), ["/ttl"])
    await expectUnknown(
      await server.fetch("/v1/auth/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ api_key: tenant.api_key, scope: "all" }) }),
      ["/scope"]
    )
    await expectUnknown(await asAdmin("/v1/admin/tenants", { name: "x", plan: "pro" }), ["/plan"])
    await expectUnknown(await asAdmin(`/v1/admin/tenants/${tenant.id}/keys`, { admin: false, agents: ["a"] }), ["/agents"])
    await expectUnknown(await asAdmin("/v1/admin/breakers/cache", { action: "close", force: true }), ["/force"])
    const failed = await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
    await ledgerRecord(server, failed.error_id)
    await expectUnknown(await asAdmin(`/v1/admin/errors/${failed.error_id}/resolve`, { notes: "n", note: "n" }), ["/note"])
    // Nothing was written by the refused requests: the message list is still empty.
    expect(((await (await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(tenant.api_key))).json()) as { data: Array<unknown> }).data).toEqual([])
  })

  test("in the query of a route that takes query parameters; a route that takes none ignores its query", async () => {
    await expectUnknown(await server.fetch("/v1/sessions?limt=5", withKey(tenant.api_key)), ["/limt"])
    await expectUnknown(await server.fetch(`/v1/sessions/${sessionId}/messages?since=1`, withKey(tenant.api_key)), ["/since"])
    await expectUnknown(await server.admin("/v1/admin/errors?status=500&limit=5"), ["/status"])
    expect((await server.fetch(`/v1/sessions/${sessionId}?_=123`, withKey(tenant.api_key))).status).toBe(200)
    expect((await server.fetch(`/v1/sessions/${sessionId}/memory?_=123`, withKey(tenant.api_key))).status).toBe(200)
  })

  test("integers and dates are what the document says", async () => {
    for (const query of ["limit=1e2", "limit=+5", "limit=5.0", "limit= 5"]) {
      const problem = await expectProblem(await server.fetch(`/v1/sessions?${query}`, withKey(tenant.api_key)), 400, "VALIDATION_FAILED")
      expect(problem.errors?.map((issue) => issue.pointer)).toEqual(["/limit"])
    }
    for (const since of ["2026-01-01", "yesterday", "2026-13-01T00:00:00Z"]) {
      const problem = await expectProblem(await server.admin(`/v1/admin/errors?since=${since}`), 400, "VALIDATION_FAILED")
      expect(problem.errors?.map((issue) => issue.pointer)).toEqual(["/since"])
    }
    expect((await server.admin("/v1/admin/errors?since=2026-01-01T00:00:00Z&limit=500")).status).toBe(200)
    expect((await server.admin("/v1/admin/errors/stats?since=2026-01-01T00:00:00.123%2B02:00")).status).toBe(200)
  })
})

describe("405 with Allow", () => {
  test("a known path with a method it does not take", async () => {
    const cases: Array<[string, string, string]> = [
      ["PATCH", `/v1/sessions/${sessionId}`, "GET, HEAD, DELETE"],
      ["PUT", "/v1/sessions", "GET, HEAD, POST"],
      ["POST", "/health/live", "GET, HEAD"],
      ["DELETE", `/v1/sessions/${sessionId}/messages`, "GET, HEAD, POST"]
    ]
    for (const [method, path, allow] of cases) {
      const response = await server.fetch(path, withKey(tenant.api_key, { method, ...(method === "DELETE" ? {} : { body: "{}" }) }))
      expect(response.headers.get("allow")).toBe(allow)
      const problem = await expectProblem(response, 405, "METHOD_NOT_ALLOWED")
      const row = await ledgerRecord(server, problem.error_id)
      expect(row).toMatchObject({ code: "METHOD_NOT_ALLOWED", status: 405, severity: "warning", method })
    }
    await expectProblem(await server.fetch("/v1/nowhere", withKey(tenant.api_key, { method: "PATCH", body: "{}" })), 404, "ROUTE_NOT_FOUND")
  })
})

describe("caching headers", () => {
  test("secrets are no-store; other answers to a request with credentials are private, no-store; anonymous ones say nothing", async () => {
    const token = await server.fetch("/v1/auth/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ api_key: tenant.api_key })
    })
    expect(token.status).toBe(200)
    expect(token.headers.get("cache-control")).toBe("no-store")
    const created = await server.admin("/v1/admin/tenants", { method: "POST", body: JSON.stringify({ name: `cache-${crypto.randomUUID()}` }) })
    expect(created.status).toBe(201)
    expect(created.headers.get("cache-control")).toBe("no-store")
    const key = await server.admin(`/v1/admin/tenants/${tenant.id}/keys`, { method: "POST", body: "{}" })
    expect(key.status).toBe(201)
    expect(key.headers.get("cache-control")).toBe("no-store")

    for (const path of [`/v1/sessions/${sessionId}`, "/v1/sessions", `/v1/sessions/${crypto.randomUUID()}`, `/v1/sessions/${sessionId}/memory`]) {
      const response = await server.fetch(path, withKey(tenant.api_key))
      expect({ path, cacheControl: response.headers.get("cache-control") }).toEqual({ path, cacheControl: "private, no-store" })
    }
    expect((await server.admin("/v1/admin/errors?limit=1")).headers.get("cache-control")).toBe("private, no-store")
    const stream = await openEvents(`${server.url}/v1/sessions/${sessionId}/events`, withKey(tenant.api_key))
    try {
      expect(stream.response.status).toBe(200)
      expect(stream.response.headers.get("cache-control")).toBe("private, no-store")
    } finally {
      stream.close()
    }
    // The console's sign-in carries a secret (its cookie); answers to requests with that cookie are private.
    const signIn = await server.fetch("/v1/console/session", {
      method: "POST",
      headers: { "content-type": "application/json", origin: server.url },
      body: JSON.stringify({ admin_token: server.adminToken })
    })
    expect(signIn.status).toBe(200)
    expect(signIn.headers.get("cache-control")).toBe("no-store")
    const cookie = (signIn.headers.get("set-cookie") ?? "").split(";")[0]!
    const withCookie = await server.fetch("/v1/admin/errors?limit=1", { headers: { cookie } })
    expect(withCookie.status).toBe(200)
    expect(withCookie.headers.get("cache-control")).toBe("private, no-store")
    expect((await server.fetch("/v1/sessions")).headers.get("cache-control")).toBeNull()
    expect((await server.fetch("/health/live")).headers.get("cache-control")).toBeNull()
  })
})
