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
  const row = await ledgerRecord(server, problem["error_id"])
  expect(row.trace_id).toBe(span.traceId)

  await client.listTools()
  await spanWith((candidate) => candidate.name === "tools/list" && attribute(candidate, "mcp.session.id") === transport.sessionId)
  await eventually(async () => (receiver.metricNames().has("mcp.server.operation.duration") ? true : undefined), 5000)
  await client.close()
})
