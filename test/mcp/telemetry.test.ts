/** MCP requests on spans and in metrics as OpenTelemetry's MCP conventions name them (SPEC §11), at a real OTLP receiver. */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { attribute, type ReceivedSpan, type Receiver, startReceiver } from "../support/otlp.js"
import { eventually, ledgerRecord, startServer, type TestServer } from "../support/server.js"
import { connect, type ToolResult } from "./client.js"

let receiver: Receiver
let server: TestServer
let key: string

beforeAll(async () => {
  receiver = startReceiver()
  server = await startServer({ otlpEndpoint: receiver.url })
  key = (await server.createTenant()).api_key
})
afterAll(async () => {
  await server.close()
  receiver.stop()
})

const spanWith = (predicate: (span: ReceivedSpan) => boolean) => eventually(async () => receiver.spans().find(predicate), 5000)

test("a failing tools/call: span `tools/call {tool}` with the MCP attributes, error.type and error.id; the ledger row has its trace id", async () => {
  const { client, transport } = await connect(server, key)
  const result = (await client.callTool({ name: "get_session", arguments: { session_id: crypto.randomUUID() } })) as ToolResult
  const problem = result.structuredContent!
  const span = await spanWith((candidate) => candidate.name === "tools/call get_session" && attribute(candidate, "error.id") === problem["error_id"])
  expect(span.kind).toBe(2)
  expect(attribute(span, "mcp.method.name")).toBe("tools/call")
  expect(attribute(span, "gen_ai.tool.name")).toBe("get_session")
  expect(attribute(span, "mcp.session.id")).toBe(transport.sessionId)
  expect(attribute(span, "mcp.protocol.version")).toBe("2025-11-25")
  expect(typeof attribute(span, "jsonrpc.request.id")).toBe("string")
  expect(attribute(span, "error.type")).toBe("NotFound")
  // The MCP conventions: ERROR whenever error.type is set, though the call itself was answered.
  expect(span.status.code).toBe(2)
  const row = await ledgerRecord(server, problem["error_id"])
  expect(row.trace_id).toBe(span.traceId)

  await client.listTools()
  await spanWith((candidate) => candidate.name === "tools/list" && attribute(candidate, "mcp.session.id") === transport.sessionId)
  await eventually(async () => (receiver.metricNames().has("mcp.server.operation.duration") ? true : undefined), 5000)
  await client.close()
})

// Trace context (OpenTelemetry's MCP conventions, SEP-414): `traceparent` in `params._meta`.

const hex = (length: number) => Array.from(crypto.getRandomValues(new Uint8Array(length / 2)), (byte) => byte.toString(16).padStart(2, "0")).join("")
const remoteParent = () => {
  const traceId = hex(32)
  const spanId = hex(16)
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` }
}

const MODERN = "2026-07-28"

/** A stateless `tools/call`, with `_meta` extras and HTTP headers of the test's choosing. */
const modernCall = (name: string, args: Record<string, unknown>, metaExtras: Record<string, unknown>, headers: Record<string, string> = {}) =>
  server.fetch("/mcp", {
    method: "POST",
    headers: {
      authorization: `Bearer ${key}`,
      accept: "application/json, text/event-stream",
      "content-type": "application/json",
      "mcp-protocol-version": MODERN,
      "mcp-method": "tools/call",
      "mcp-name": name,
      ...headers
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: {
        name,
        arguments: args,
        _meta: { "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}, ...metaExtras }
      }
    })
  })

const links = (span: ReceivedSpan): ReadonlyArray<{ traceId: string; spanId: string }> => (span as unknown as { links?: Array<{ traceId: string; spanId: string }> }).links ?? []

test("a traceparent in params._meta parents the MCP server span in the session era (SDK client), the span covering authentication", async () => {
  const { client, transport } = await connect(server, key)
  const parent = remoteParent()
  const sessionId = crypto.randomUUID()
  const result = (await client.callTool({ name: "get_session", arguments: { session_id: sessionId }, _meta: { traceparent: parent.traceparent, tracestate: "vendor=abc" } })) as ToolResult
  expect(result.isError).toBe(true)
  const span = await spanWith((candidate) => candidate.name === "tools/call get_session" && candidate.traceId === parent.traceId)
  expect(span.parentSpanId).toBe(parent.spanId)
  expect(span.kind).toBe(2)
  expect(attribute(span, "mcp.session.id")).toBe(transport.sessionId)
  // Authentication ran under the span: it wrote the caller's tenant on it.
  expect(typeof attribute(span, "bulwark.tenant_id")).toBe("string")
  // The ledger row an operator finds by the error_id names the caller's trace.
  const row = await ledgerRecord(server, result.structuredContent!["error_id"])
  expect(row.trace_id).toBe(parent.traceId)

  // A message the SDK answers itself (resources/read) is parented the same way.
  const other = remoteParent()
  await client.readResource({ uri: `bulwark://sessions/${sessionId}/messages`, _meta: { traceparent: other.traceparent } }).catch(() => undefined)
  const read = await spanWith((candidate) => candidate.name === "resources/read" && candidate.traceId === other.traceId)
  expect(read.parentSpanId).toBe(other.spanId)
  expect(attribute(read, "mcp.resource.uri")).toBe(`bulwark://sessions/${sessionId}/messages`)
  await client.close()
})

test("stateless era: the _meta traceparent parents the span and X-Trace-Id names its trace; the HTTP traceparent alone is the parent, and with both it is a link", async () => {
  const parent = remoteParent()
  const response = await modernCall("list_sessions", {}, { traceparent: parent.traceparent })
  expect(response.status).toBe(200)
  expect(((await response.json()) as { result: ToolResult }).result.isError).toBe(false)
  expect(response.headers.get("x-trace-id")).toBe(parent.traceId)
  const span = await spanWith((candidate) => candidate.name === "tools/call list_sessions" && candidate.traceId === parent.traceId)
  expect(span.parentSpanId).toBe(parent.spanId)
  expect(attribute(span, "mcp.protocol.version")).toBe(MODERN)
  expect(attribute(span, "error.type")).toBeUndefined()
  expect(span.status.code).not.toBe(2)

  const header = remoteParent()
  await (await modernCall("list_sessions", {}, {}, { traceparent: header.traceparent })).text()
  const fromHeader = await spanWith((candidate) => candidate.name === "tools/call list_sessions" && candidate.traceId === header.traceId)
  expect(fromHeader.parentSpanId).toBe(header.spanId)

  const carried = remoteParent()
  const transportContext = remoteParent()
  await (await modernCall("list_sessions", {}, { traceparent: carried.traceparent }, { traceparent: transportContext.traceparent })).text()
  const both = await spanWith((candidate) => candidate.name === "tools/call list_sessions" && candidate.traceId === carried.traceId)
  expect(both.parentSpanId).toBe(carried.spanId)
  expect(links(both)).toContainEqual(expect.objectContaining({ traceId: transportContext.traceId, spanId: transportContext.spanId }))
})

test("a malformed traceparent in _meta is ignored: the call is answered and its span starts a trace of its own", async () => {
  const valid = remoteParent()
  const malformed = [
    `00-${valid.traceId.toUpperCase()}-${valid.spanId}-01`,
    `00-${"0".repeat(32)}-${valid.spanId}-01`,
    `00-${valid.traceId}-${"0".repeat(16)}-01`,
    `ff-${valid.traceId}-${valid.spanId}-01`,
    `00-${valid.traceId}-${valid.spanId}-01-extra`,
    `00-${valid.traceId}-${valid.spanId}`,
    42
  ]
  for (const [index, traceparent] of malformed.entries()) {
    const response = await modernCall("list_memory", { session_id: crypto.randomUUID() }, { traceparent })
    expect(response.status).toBe(200)
    const body = (await response.json()) as { id: number; result: ToolResult }
    // The tool's own answer (the session does not exist), not a protocol error about the context.
    expect(body.result.structuredContent!["code"]).toBe("SESSION_NOT_FOUND")
    const traceId = response.headers.get("x-trace-id")
    expect(traceId).not.toBe(valid.traceId)
    const span = await spanWith((candidate) => candidate.name === "tools/call list_memory" && candidate.traceId === traceId)
    expect(span.parentSpanId ?? "", `case ${index}`).toBe("")
  }
})

test("the initialize span names the session it opened; a refusal at the edge (401) ends its span ERROR and its ledger row carries the caller's trace", async () => {
  const { client, transport } = await connect(server, key)
  await spanWith((candidate) => candidate.name === "initialize" && attribute(candidate, "mcp.session.id") === transport.sessionId)
  await client.close()

  const parent = remoteParent()
  const response = await server.fetch("/mcp", {
    method: "POST",
    headers: { accept: "application/json, text/event-stream", "content-type": "application/json", traceparent: parent.traceparent },
    body: JSON.stringify({ jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "get_session", arguments: { session_id: crypto.randomUUID() } } })
  })
  expect(response.status).toBe(401)
  const problem = (await response.json()) as { code: string; error_id: string }
  expect(problem.code).toBe("AUTH_MISSING")
  const span = await spanWith((candidate) => candidate.name === "tools/call get_session" && candidate.traceId === parent.traceId)
  expect(span.parentSpanId).toBe(parent.spanId)
  expect(attribute(span, "error.type")).toBe("Unauthenticated")
  expect(attribute(span, "error.id")).toBe(problem.error_id)
  expect(span.status.code).toBe(2)
  expect((await ledgerRecord(server, problem.error_id)).trace_id).toBe(parent.traceId)
})

test("a JSON-RPC error answered by the server puts its code on the span as error.type and rpc.response.status_code", async () => {
  const parent = remoteParent()
  const response = await modernCall("no_such_tool", {}, { traceparent: parent.traceparent })
  expect(((await response.json()) as { error: { code: number } }).error.code).toBe(-32602)
  // An unknown tool is not named in the span: clients cannot mint span names.
  const span = await spanWith((candidate) => candidate.name === "tools/call" && candidate.traceId === parent.traceId)
  expect(attribute(span, "error.type")).toBe("-32602")
  expect(attribute(span, "rpc.response.status_code")).toBe("-32602")
  expect(span.status.code).toBe(2)
})

test("a _meta traceparent its caller did not sample is followed: nothing of that trace is exported", async () => {
  const unsampled = remoteParent()
  const notSampled = await modernCall("list_sessions", {}, { traceparent: `00-${unsampled.traceId}-${unsampled.spanId}-00` })
  expect(notSampled.headers.get("x-trace-id")).toBe(unsampled.traceId)
  await notSampled.text()
  const sampled = remoteParent()
  await (await modernCall("list_sessions", {}, { traceparent: sampled.traceparent })).text()
  await spanWith((candidate) => candidate.traceId === sampled.traceId)
  // Exported in the order they ended: what came before the sampled trace has been sent by now.
  expect(receiver.spans().some((candidate) => candidate.traceId === unsampled.traceId)).toBe(false)
})
