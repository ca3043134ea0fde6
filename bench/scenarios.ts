/**
 * The scenarios of SPEC §9: which request, against which servers, and the status a right answer has.
 * The hot read, the 404 and the write run on SQLite and again on PostgreSQL, each against the
 * references on the same database. On both databases the MCP twins of the read and the write
 * (SPEC §11) run against Bulwark alone, to weigh an MCP call against its REST twin.
 */
import type { Target, TargetId } from "./targets.js"
import type { WrkRequest } from "./wrk.js"

export type ScenarioId =
  | "hot-read"
  | "hot-read-redis-down"
  | "not-found"
  | "write"
  | "mcp-read"
  | "mcp-read-stateless"
  | "mcp-write"
  | "pg-hot-read"
  | "pg-not-found"
  | "pg-write"
  | "pg-mcp-read"
  | "pg-mcp-write"

export type BenchDatabase = "sqlite" | "postgres"

export interface Scenario {
  readonly id: ScenarioId
  readonly database: BenchDatabase
  readonly title: string
  readonly targets: ReadonlyArray<TargetId>
  /** Only responses with this status count as throughput. */
  readonly expectedStatus: number
  readonly request: (target: Target) => WrkRequest
}

const SQLITE_SERVERS: ReadonlyArray<TargetId> = ["bulwark", "raw", "hono"]
const POSTGRES_SERVERS: ReadonlyArray<TargetId> = ["bulwark-pg", "raw-pg", "hono-pg"]

const hotRead = (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/v1/sessions/${target.sessionId}`,
  method: "GET",
  apiKey: target.apiKey
})

export const MESSAGE_BODY = JSON.stringify({ agent_id: "bench", content: "hello" })

const notFound = (missingSessionId: string) => (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/v1/sessions/${missingSessionId}`,
  method: "GET",
  apiKey: target.apiKey
})

const write = (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/v1/sessions/${target.sessionId}/messages`,
  method: "POST",
  apiKey: target.apiKey,
  body: MESSAGE_BODY
})

/** `tools/call` as a client of the 2025-11-25 revision sends it, in the target's MCP session. */
const mcpSessionCall = (name: string, args: (target: Target) => Record<string, unknown>) => (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/mcp`,
  method: "POST",
  apiKey: target.apiKey,
  headers: { accept: "application/json, text/event-stream", "mcp-session-id": target.mcpSessionId ?? "", "mcp-protocol-version": "2025-11-25" },
  body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args(target) } })
})

/** `tools/call` as a client of the 2026-07-28 revision sends it: no session, its version in `_meta` and the headers. */
const mcpStatelessCall = (name: string, args: (target: Target) => Record<string, unknown>) => (target: Target): WrkRequest => ({
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
      arguments: args(target),
      _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} }
    }
  })
})

const sessionArgs = (target: Target) => ({ session_id: target.sessionId })
const messageArgs = (target: Target) => ({ session_id: target.sessionId, agent_id: "bench", content: "hello" })

/** `missingSessionId` is a fresh random UUID: no target has a session with it. */
export const scenarios = (missingSessionId: string, databases: ReadonlyArray<BenchDatabase>): ReadonlyArray<Scenario> => {
  const sqlite: ReadonlyArray<Scenario> = [
    { id: "hot-read", database: "sqlite", title: "hot read `GET /v1/sessions/{id}`", targets: SQLITE_SERVERS, expectedStatus: 200, request: hotRead },
    {
      id: "hot-read-redis-down",
      database: "sqlite",
      title: "hot read, cache's Redis unreachable",
      targets: ["bulwark-redis-down"],
      expectedStatus: 200,
      request: hotRead
    },
    {
      id: "not-found",
      database: "sqlite",
      title: "404 `GET /v1/sessions/{unknown id}`",
      targets: SQLITE_SERVERS,
      expectedStatus: 404,
      request: notFound(missingSessionId)
    },
    { id: "write", database: "sqlite", title: "write `POST /v1/sessions/{id}/messages`", targets: SQLITE_SERVERS, expectedStatus: 201, request: write },
    {
      id: "mcp-read",
      database: "sqlite",
      title: "MCP `tools/call get_session` (2025-11-25 session)",
      targets: ["bulwark"],
      expectedStatus: 200,
      request: mcpSessionCall("get_session", sessionArgs)
    },
    {
      id: "mcp-read-stateless",
      database: "sqlite",
      title: "MCP `tools/call get_session` (2026-07-28, stateless)",
      targets: ["bulwark"],
      expectedStatus: 200,
      request: mcpStatelessCall("get_session", sessionArgs)
    },
    {
      id: "mcp-write",
      database: "sqlite",
      title: "MCP `tools/call post_message` (2025-11-25 session)",
      targets: ["bulwark"],
      expectedStatus: 200,
      request: mcpSessionCall("post_message", messageArgs)
    }
  ]
  const postgres: ReadonlyArray<Scenario> = [
    {
      id: "pg-hot-read",
      database: "postgres",
      title: "PostgreSQL: hot read `GET /v1/sessions/{id}`",
      targets: POSTGRES_SERVERS,
      expectedStatus: 200,
      request: hotRead
    },
    {
      id: "pg-not-found",
      database: "postgres",
      title: "PostgreSQL: 404 `GET /v1/sessions/{unknown id}`",
      targets: POSTGRES_SERVERS,
      expectedStatus: 404,
      request: notFound(missingSessionId)
    },
    {
      id: "pg-write",
      database: "postgres",
      title: "PostgreSQL: write `POST /v1/sessions/{id}/messages`",
      targets: POSTGRES_SERVERS,
      expectedStatus: 201,
      request: write
    },
    {
      id: "pg-mcp-read",
      database: "postgres",
      title: "PostgreSQL: MCP `tools/call get_session` (2025-11-25 session)",
      targets: ["bulwark-pg"],
      expectedStatus: 200,
      request: mcpSessionCall("get_session", sessionArgs)
    },
    {
      id: "pg-mcp-write",
      database: "postgres",
      title: "PostgreSQL: MCP `tools/call post_message` (2025-11-25 session)",
      targets: ["bulwark-pg"],
      expectedStatus: 200,
      request: mcpSessionCall("post_message", messageArgs)
    }
  ]
  return [...(databases.includes("sqlite") ? sqlite : []), ...(databases.includes("postgres") ? postgres : [])]
}
