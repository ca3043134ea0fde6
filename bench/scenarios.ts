/** The four scenarios of SPEC §9 and the MCP twins of the read and the write (SPEC §11): which request, against which servers, and the status a right answer has. */
import type { Target, TargetId } from "./targets.js"
import type { WrkRequest } from "./wrk.js"

export type ScenarioId = "hot-read" | "hot-read-redis-down" | "not-found" | "write" | "mcp-read" | "mcp-read-stateless" | "mcp-write"

export interface Scenario {
  readonly id: ScenarioId
  readonly title: string
  readonly targets: ReadonlyArray<TargetId>
  /** Only responses with this status count as throughput. */
  readonly expectedStatus: number
  readonly request: (target: Target) => WrkRequest
}

const ALL_SERVERS: ReadonlyArray<TargetId> = ["bulwark", "raw", "hono"]

const hotRead = (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/v1/sessions/${target.sessionId}`,
  method: "GET",
  apiKey: target.apiKey
})

export const MESSAGE_BODY = JSON.stringify({ agent_id: "bench", content: "hello" })

/** `tools/call` as a client of the 2025-11-25 revision sends it, in the target's MCP session. */
const mcpSessionCall = (target: Target, name: string, args: Record<string, unknown>): WrkRequest => ({
  url: `${target.baseUrl}/mcp`,
  method: "POST",
  apiKey: target.apiKey,
  headers: { accept: "application/json, text/event-stream", "mcp-session-id": target.mcpSessionId ?? "", "mcp-protocol-version": "2025-11-25" },
  body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args } })
})

/** `tools/call` as a client of the 2026-07-28 revision sends it: no session, its version in `_meta` and the headers. */
const mcpStatelessCall = (target: Target, name: string, args: Record<string, unknown>): WrkRequest => ({
  url: `${target.baseUrl}/mcp`,
  method: "POST",
  apiKey: target.apiKey,
  headers: { accept: "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name },
  body: JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "tools/call",
    params: {
      name,
      arguments: args,
      _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} }
    }
  })
})

/** `missingSessionId` is a fresh random UUID: no target has a session with it. */
export const scenarios = (missingSessionId: string): ReadonlyArray<Scenario> => [
  {
    id: "hot-read",
    title: "hot read `GET /v1/sessions/{id}`",
    targets: ALL_SERVERS,
    expectedStatus: 200,
    request: hotRead
  },
  {
    id: "hot-read-redis-down",
    title: "hot read, cache's Redis unreachable",
    targets: ["bulwark-redis-down"],
    expectedStatus: 200,
    request: hotRead
  },
  {
    id: "not-found",
    title: "404 `GET /v1/sessions/{unknown id}`",
    targets: ALL_SERVERS,
    expectedStatus: 404,
    request: (target) => ({ url: `${target.baseUrl}/v1/sessions/${missingSessionId}`, method: "GET", apiKey: target.apiKey })
  },
  {
    id: "write",
    title: "write `POST /v1/sessions/{id}/messages`",
    targets: ALL_SERVERS,
    expectedStatus: 201,
    request: (target) => ({
      url: `${target.baseUrl}/v1/sessions/${target.sessionId}/messages`,
      method: "POST",
      apiKey: target.apiKey,
      body: MESSAGE_BODY
    })
  },
  {
    id: "mcp-read",
    title: "MCP `tools/call get_session` (2025-11-25 session)",
    targets: ["bulwark"],
    expectedStatus: 200,
    request: (target) => mcpSessionCall(target, "get_session", { session_id: target.sessionId })
  },
  {
    id: "mcp-read-stateless",
    title: "MCP `tools/call get_session` (2026-07-28, stateless)",
    targets: ["bulwark"],
    expectedStatus: 200,
    request: (target) => mcpStatelessCall(target, "get_session", { session_id: target.sessionId })
  },
  {
    id: "mcp-write",
    title: "MCP `tools/call post_message` (2025-11-25 session)",
    targets: ["bulwark"],
    expectedStatus: 200,
    request: (target) => mcpSessionCall(target, "post_message", { session_id: target.sessionId, agent_id: "bench", content: "hello" })
  }
]
