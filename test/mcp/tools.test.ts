/**
 * The ten tools through the official SDK client (2025-11-25 era) against a real server: results are
 * the REST bodies, every failure is `isError` with the problem object and a ledger row of type `mcp`.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { McpError } from "@modelcontextprotocol/sdk/types.js"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { connect, type ToolResult } from "./client.js"

let server: TestServer
let tenant: { id: string; api_key: string }
let client: Client

const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as ToolResult

const ok = async (name: string, args: Record<string, unknown>) => {
  const result = await call(name, args)
  if (result.isError) throw new Error(`${name} failed: ${result.content[0]?.text}`)
  // Clients that only read text get the same body.
  expect(JSON.parse(result.content[0]!.text!)).toEqual(result.structuredContent!)
  return result.structuredContent!
}

/** A failed tool call as SPEC §11 promises it: the problem object, one line of text, a ledger row. */
const failure = async (name: string, args: Record<string, unknown>, status: number, code: string, via: Client = client) => {
  const result = (await via.callTool({ name, arguments: args })) as ToolResult
  expect(result.isError).toBe(true)
  const problem = result.structuredContent!
  expect(problem).toMatchObject({ status, code, type: `/problems/${code.toLowerCase().replaceAll("_", "-")}` })
  expect(problem["instance"]).toBe(`urn:uuid:${problem["error_id"]}`)
  expect(result.content[0]!.text).toBe(`${code}: ${problem["detail"]} (error_id ${problem["error_id"]})`)
  const row = await ledgerRecord(server, problem["error_id"])
  expect(row).toMatchObject({ error_id: problem["error_id"], type: "mcp", code, status, route: `mcp tools/call ${name}`, method: "POST" })
  return { problem, row }
}

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
  client = (await connect(server, tenant.api_key)).client
})
afterAll(async () => {
  await client.close()
  await server.close()
})

describe("tools/list", () => {
  test("lists the ten tools, each with object input and output schemas derived from the REST schemas", async () => {
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name)).toEqual([
      "create_session", "get_session", "list_sessions", "delete_session", "post_message",
      "list_messages", "get_memory", "set_memory", "delete_memory", "list_memory"
    ])
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe("object")
      expect(tool.outputSchema?.type).toBe("object")
      expect(tool.description?.length).toBeGreaterThan(10)
    }
    const post = tools.find((tool) => tool.name === "post_message")!
    expect(post.inputSchema.required).toEqual(["session_id", "agent_id", "content"])
    expect(Object.keys(post.inputSchema.properties ?? {})).toEqual(["session_id", "agent_id", "content", "metadata", "idempotency_key"])
  })
})

describe("the shared context through tools", () => {
  test("create, read, list and delete a session; post and list messages; set, read, list and delete memory", async () => {
    const session = await ok("create_session", { title: "planning", metadata: { team: "a" } })
    expect(session).toMatchObject({ title: "planning", metadata: { team: "a" } })
    const sessionId = session["id"] as string
    expect(await ok("get_session", { session_id: sessionId })).toEqual(session)
    const page = await ok("list_sessions", { limit: 10 })
    expect(page["data"].map((s: { id: string }) => s.id)).toContain(sessionId)

    const first = await ok("post_message", { session_id: sessionId, agent_id: "planner", content: "hello" })
    expect(first).toMatchObject({ session_id: sessionId, seq: 1, agent_id: "planner", content: "hello", metadata: {} })
    await ok("post_message", { session_id: sessionId, agent_id: "critic", content: "hi", metadata: { mood: "ok" } })
    const messages = await ok("list_messages", { session_id: sessionId, after: 0, limit: 1 })
    expect(messages["data"].map((m: { seq: number }) => m.seq)).toEqual([1])
    expect(messages["next_after"]).toBe(1)
    expect((await ok("list_messages", { session_id: sessionId, after: 1 }))["data"][0]).toMatchObject({ seq: 2, metadata: { mood: "ok" } })

    const entry = await ok("set_memory", { session_id: sessionId, key: "plan", value: { steps: [1, 2] }, ttl_seconds: 60 })
    expect(entry).toMatchObject({ key: "plan", value: { steps: [1, 2] } })
    expect(entry["expires_at"]).not.toBeNull()
    expect(await ok("get_memory", { session_id: sessionId, key: "plan" })).toEqual(entry)
    expect((await ok("list_memory", { session_id: sessionId }))["data"]).toEqual([entry])
    expect(await ok("delete_memory", { session_id: sessionId, key: "plan" })).toEqual({ deleted: true })
    await failure("get_memory", { session_id: sessionId, key: "plan" }, 404, "MEMORY_KEY_NOT_FOUND")

    expect(await ok("delete_session", { session_id: sessionId })).toEqual({ deleted: true })
    const { row } = await failure("get_session", { session_id: sessionId }, 404, "SESSION_NOT_FOUND")
    expect(row).toMatchObject({ tenant_id: tenant.id, session_id: sessionId, severity: "warning" })
  })

  test("REST and MCP are two doors into the same data", async () => {
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "rest" }) }))
    const session = (await created.json()) as { id: string }
    await server.fetch(`/v1/sessions/${session.id}/messages`, withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "rest-agent", content: "from REST" }) }))
    await ok("post_message", { session_id: session.id, agent_id: "mcp-agent", content: "from MCP" })
    const listed = await server.fetch(`/v1/sessions/${session.id}/messages`, withKey(tenant.api_key))
    const body = (await listed.json()) as { data: Array<{ seq: number; content: string }> }
    expect(body.data.map((m) => [m.seq, m.content])).toEqual([[1, "from REST"], [2, "from MCP"]])
  })

  test("results are the REST bodies, field for field", async () => {
    const session = await ok("create_session", { title: "same", metadata: { n: 1 } })
    const id = session["id"] as string
    await ok("post_message", { session_id: id, agent_id: "a", content: "x", metadata: { k: [1, null] } })
    await ok("set_memory", { session_id: id, key: "k", value: { deep: { list: [1, "two"] } } })
    const rest = async (path: string) => (await (await server.fetch(path, withKey(tenant.api_key))).json()) as Record<string, unknown>
    expect(await ok("get_session", { session_id: id })).toEqual(await rest(`/v1/sessions/${id}`))
    expect(await ok("list_messages", { session_id: id })).toEqual(await rest(`/v1/sessions/${id}/messages`))
    expect(await ok("get_memory", { session_id: id, key: "k" })).toEqual(await rest(`/v1/sessions/${id}/memory/k`))
    expect(await ok("list_memory", { session_id: id })).toEqual(await rest(`/v1/sessions/${id}/memory`))
    expect(await ok("list_sessions", { limit: 200 })).toEqual(await rest("/v1/sessions?limit=200"))
  })

  test("idempotency_key: a repeat returns the first result and writes nothing; other arguments are IDEMPOTENCY_KEY_REUSED", async () => {
    const key = crypto.randomUUID()
    const session = await ok("create_session", { title: "once", idempotency_key: key })
    expect(await ok("create_session", { title: "once", idempotency_key: key })).toEqual(session)
    await failure("create_session", { title: "twice", idempotency_key: key }, 409, "IDEMPOTENCY_KEY_REUSED")

    const postKey = crypto.randomUUID()
    const args = { session_id: session["id"], agent_id: "a", content: "once", idempotency_key: postKey }
    const first = await ok("post_message", args)
    expect(await ok("post_message", args)).toEqual(first)
    expect((await ok("list_messages", { session_id: session["id"] }))["data"]).toHaveLength(1)
    await failure("post_message", { ...args, content: "other" }, 409, "IDEMPOTENCY_KEY_REUSED")
  })
})

describe("failures are tool errors with the problem object", () => {
  test("arguments that fail validation are VALIDATION_FAILED with pointers into the arguments", async () => {
    const { problem, row } = await failure("post_message", { session_id: "not-a-uuid", content: 7 }, 400, "VALIDATION_FAILED")
    const pointers = (problem["errors"] as Array<{ pointer: string }>).map((issue) => issue.pointer).sort()
    expect(pointers).toEqual(["/agent_id", "/content", "/session_id"])
    expect(row.severity).toBe("warning")
    await failure("list_sessions", { limit: 500 }, 400, "VALIDATION_FAILED")
    const { problem: key } = await failure("set_memory", { session_id: crypto.randomUUID(), key: "bad key!", value: 1 }, 400, "VALIDATION_FAILED")
    expect(key["errors"]).toEqual([expect.objectContaining({ pointer: "/key" })])
  })

  test("the session's own errors: SESSION_ALREADY_EXISTS, PAYLOAD_TOO_LARGE with /content, SESSION_NOT_FOUND on a post", async () => {
    const session = await ok("create_session", {})
    await failure("create_session", { id: session["id"] }, 409, "SESSION_ALREADY_EXISTS")
    const { problem } = await failure("post_message", { session_id: session["id"], agent_id: "a", content: "x".repeat(65 * 1024) }, 413, "PAYLOAD_TOO_LARGE")
    expect(problem["errors"]).toEqual([expect.objectContaining({ pointer: "/content" })])
    const missing = crypto.randomUUID()
    const { row } = await failure("post_message", { session_id: missing, agent_id: "a", content: "x" }, 404, "SESSION_NOT_FOUND")
    expect(row.session_id).toBe(missing)
    expect(row.request_payload).toMatchObject({ session_id: missing, agent_id: "a" })
  })

  test("a key that does not allow the agent gets FORBIDDEN; another tenant's session is SESSION_NOT_FOUND", async () => {
    const session = await ok("create_session", {})
    const narrow = await server.admin(`/v1/admin/tenants/${tenant.id}/keys`, { method: "POST", body: JSON.stringify({ allowed_agents: ["planner"] }) })
    const narrowKey = ((await narrow.json()) as { api_key: string }).api_key
    const narrowClient = (await connect(server, narrowKey)).client
    await failure("post_message", { session_id: session["id"], agent_id: "critic", content: "x" }, 403, "FORBIDDEN", narrowClient)
    await narrowClient.close()

    const other = await server.createTenant()
    const otherClient = (await connect(server, other.api_key)).client
    const { row } = await failure("get_session", { session_id: session["id"] }, 404, "SESSION_NOT_FOUND", otherClient)
    expect(row.tenant_id).toBe(other.id)
    await otherClient.close()
  })

  test("an unknown tool is a JSON-RPC error -32602 with the request's id", async () => {
    const error = await client.callTool({ name: "drop_database", arguments: {} }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(McpError)
    expect((error as McpError).code).toBe(-32602)
  })

  test("an access token from /v1/auth/token works like its key", async () => {
    const token = await server.accessToken(tenant.api_key)
    const viaToken = (await connect(server, token)).client
    const session = (await viaToken.callTool({ name: "create_session", arguments: { title: "token" } })) as ToolResult
    expect(session.isError).toBe(false)
    expect(session.structuredContent!["title"]).toBe("token")
    await viaToken.close()
  })
})
