/**
 * Live shared context over MCP: the messages resource of a session, read and subscribed in both
 * eras; a subscriber is told of every message, posted through REST or MCP, on this instance or
 * another (a Redis of the test's own carries the event bus between instances).
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { McpError, ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { eventually, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { openEvents, type SseEvent } from "../support/sse.js"
import { connect, listenRequest, type ToolResult } from "./client.js"

const messagesUri = (sessionId: string) => `bulwark://sessions/${sessionId}/messages`

const restSession = async (server: TestServer, key: string) =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const restPost = async (server: TestServer, key: string, sessionId: string, content: string) => {
  const response = await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, { method: "POST", body: JSON.stringify({ agent_id: "rest", content }) }))
  expect(response.status).toBe(201)
}

/** Collects `notifications/resources/updated` as the SDK client receives them. */
const collectUpdates = (client: Client) => {
  const uris: Array<string> = []
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    uris.push(notification.params.uri)
  })
  return uris
}

describe("one instance", () => {
  let server: TestServer
  let tenant: { id: string; api_key: string }

  beforeAll(async () => {
    server = await startServer()
    tenant = await server.createTenant()
  })
  afterAll(() => server.close())

  test("2025-11-25: resources/templates/list names the messages template; resources/read returns the newest page", async () => {
    const { client } = await connect(server, tenant.api_key)
    const { resourceTemplates } = await client.listResourceTemplates()
    expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(["bulwark://sessions/{session_id}/messages"])
    const sessionId = await restSession(server, tenant.api_key)
    for (let i = 1; i <= 55; i++) await restPost(server, tenant.api_key, sessionId, `m${i}`)
    const read = await client.readResource({ uri: messagesUri(sessionId) })
    const page = JSON.parse((read.contents[0] as { text: string }).text) as { data: Array<{ seq: number }> }
    expect(page.data.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 6))
    await client.close()
  })

  test("2025-11-25: reading or subscribing to a missing session is -32002 with the problem (ledgered) in data", async () => {
    const { client } = await connect(server, tenant.api_key)
    for (const attempt of [
      () => client.readResource({ uri: messagesUri(crypto.randomUUID()) }),
      () => client.subscribeResource({ uri: messagesUri(crypto.randomUUID()) })
    ]) {
      const error = (await attempt().catch((e: unknown) => e)) as McpError
      expect(error).toBeInstanceOf(McpError)
      expect(error.code).toBe(-32002)
      expect(error.data).toMatchObject({ code: "SESSION_NOT_FOUND", status: 404 })
      const row = await ledgerRecord(server, (error.data as { error_id: string }).error_id)
      expect(row.type).toBe("mcp")
    }
    const bad = (await client.readResource({ uri: "file:///etc/passwd" }).catch((e: unknown) => e)) as McpError
    expect(bad.code).toBe(-32602)
    await client.close()
  })

  test("2025-11-25: resources/subscribe is told of each message posted through REST or another MCP client; unsubscribe stops it", async () => {
    const { client } = await connect(server, tenant.api_key)
    const updates = collectUpdates(client)
    const sessionId = await restSession(server, tenant.api_key)
    await client.subscribeResource({ uri: messagesUri(sessionId) })
    await restPost(server, tenant.api_key, sessionId, "via REST")
    await eventually(async () => (updates.length >= 1 ? true : undefined))
    const poster = (await connect(server, tenant.api_key)).client
    const posted = (await poster.callTool({ name: "post_message", arguments: { session_id: sessionId, agent_id: "other", content: "via MCP" } })) as ToolResult
    expect(posted.isError).toBe(false)
    await eventually(async () => (updates.length >= 2 ? true : undefined))
    expect(updates).toEqual([messagesUri(sessionId), messagesUri(sessionId)])

    await client.unsubscribeResource({ uri: messagesUri(sessionId) })
    await restPost(server, tenant.api_key, sessionId, "after unsubscribe")
    // The post above went through the same bus; a later post's notification would have arrived by now.
    const control = await restSession(server, tenant.api_key)
    await client.subscribeResource({ uri: messagesUri(control) })
    await restPost(server, tenant.api_key, control, "control")
    await eventually(async () => (updates.length >= 3 ? true : undefined))
    expect(updates.slice(2)).toEqual([messagesUri(control)])
    await poster.close()
    await client.close()
  })

  test("2026-07-28: subscriptions/listen acknowledges, then streams resources/updated tagged with the subscription id; ends when the session is deleted", async () => {
    const sessionId = await restSession(server, tenant.api_key)
    const stream = await openEvents(`${server.url}/mcp`, listenRequest(tenant.api_key, 42, { toolsListChanged: true, resourceSubscriptions: [messagesUri(sessionId)] }))
    expect(stream.response.status).toBe(200)
    expect(stream.response.headers.get("content-type")).toBe("text/event-stream")
    const data = (event: SseEvent) => JSON.parse(event.data) as Record<string, any>
    const ack = data(await stream.nextEvent(3000))
    expect(ack).toEqual({
      jsonrpc: "2.0",
      method: "notifications/subscriptions/acknowledged",
      params: { _meta: { "io.modelcontextprotocol/subscriptionId": 42 }, notifications: { resourceSubscriptions: [messagesUri(sessionId)] } }
    })
    await restPost(server, tenant.api_key, sessionId, "hello")
    expect(data(await stream.nextEvent(3000))).toEqual({
      jsonrpc: "2.0",
      method: "notifications/resources/updated",
      params: { _meta: { "io.modelcontextprotocol/subscriptionId": 42 }, uri: messagesUri(sessionId) }
    })
    await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key, { method: "DELETE" }))
    expect(data(await stream.nextEvent(3000))).toMatchObject({ jsonrpc: "2.0", id: 42, result: { resultType: "complete", _meta: { "io.modelcontextprotocol/subscriptionId": 42 } } })
    await stream.ended(3000)
  })

  test("2026-07-28: listening to a missing session is -32602 with the problem in data", async () => {
    const response = await server.fetch("/mcp", listenRequest(tenant.api_key, 1, { resourceSubscriptions: [messagesUri(crypto.randomUUID())] }))
    const body = (await response.json()) as { error: { code: number; data: { code: string } } }
    expect(body.error.code).toBe(-32602)
    expect(body.error.data.code).toBe("SESSION_NOT_FOUND")
  })
})

const available = requireRedisServer()

describe.skipIf(!available)("several instances (one database, one Redis)", () => {
  let redis: OwnRedis
  let first: TestServer
  let second: TestServer
  let key: string

  beforeAll(async () => {
    redis = await startOwnRedis()
    first = await startServer({ redisUrl: redis.url, eventHeartbeat: "60 seconds" })
    second = await startServer({ redisUrl: redis.url, databaseFile: first.databaseFile, eventHeartbeat: "60 seconds" })
    key = (await first.createTenant()).api_key
  }, 30_000)
  afterAll(async () => {
    await second.close()
    await first.close()
    await redis.stop()
  })

  test("a subscriber on one instance is told of a message posted through another", async () => {
    const { client } = await connect(first, key)
    const updates = collectUpdates(client)
    const sessionId = await restSession(second, key)
    await client.subscribeResource({ uri: messagesUri(sessionId) })
    await restPost(second, key, sessionId, "from the other instance")
    // The heartbeat is a minute: an update this soon came over the bus.
    await eventually(async () => (updates.length >= 1 ? true : undefined))
    expect(updates).toEqual([messagesUri(sessionId)])
    await client.close()
  })

  test("a 2025-11-25 session lives on the instance that opened it: another instance answers 404 (route by Mcp-Session-Id)", async () => {
    const opened = await first.fetch("/mcp", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, accept: "application/json, text/event-stream", "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1" } } })
    })
    const sessionId = opened.headers.get("mcp-session-id")!
    await opened.text()
    const elsewhere = await second.fetch("/mcp", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, accept: "application/json, text/event-stream", "content-type": "application/json", "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" })
    })
    expect(elsewhere.status).toBe(404)
    expect(((await elsewhere.json()) as { error: { code: number } }).error.code).toBe(-32001)
  })

  test("a 2026-07-28 request works on either instance", async () => {
    for (const server of [first, second]) {
      const response = await server.fetch("/mcp", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, accept: "application/json, text/event-stream", "content-type": "application/json", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } })
      })
      expect(response.status).toBe(200)
      expect(((await response.json()) as { result: { tools: Array<unknown> } }).result.tools).toHaveLength(10)
    }
  })
})
