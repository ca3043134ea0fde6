/**
 * What both eras of MCP share on the wire: versions, JSON-RPC error codes and responses, and who
 * the server says it is.
 */
/** The stateless revision (SPEC §11), which this server implements itself. */
export const MODERN_VERSION = "2026-07-28"
/**
 * The session revisions, served through the official SDK's transport (2025-11-25 and older): the
 * SDK's own list, written out so that the SDK is not loaded at start (a test keeps them equal).
 */
export const LEGACY_VERSIONS: ReadonlyArray<string> = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2024-10-07"]
export const SUPPORTED_VERSIONS: ReadonlyArray<string> = [MODERN_VERSION, ...LEGACY_VERSIONS]

export const SERVER_INFO = { name: "bulwark", title: "Bulwark shared context", version: "0.1.0" } as const

export const INSTRUCTIONS = "Bulwark keeps shared context for agents: sessions, their ordered messages and a per-session key/value memory. " +
  "Create or pick a session, post messages as your agent id, read them back or subscribe to bulwark://sessions/{session_id}/messages, " +
  "and keep state with set_memory/get_memory. A failed tool answers isError with a problem object whose code says what to do and whose error_id an operator can look up."

export const ErrorCodes = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** 2025-11-25 and earlier: resource not found. */
  ResourceNotFound: -32002,
  /** 2026-07-28. */
  HeaderMismatch: -32020,
  UnsupportedProtocolVersion: -32022
} as const

export type JsonRpcId = string | number | null

/** A JSON-RPC id as the request carried it; anything else is answered with `null`. */
export const idOf = (body: unknown): JsonRpcId => {
  const id = typeof body === "object" && body !== null ? (body as { id?: unknown }).id : undefined
  return typeof id === "string" || (typeof id === "number" && Number.isFinite(id)) ? id : null
}

export const jsonResponse = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

/** The JSON-RPC error code each error response answers, for the message's span to record. */
const errorCodes = new WeakMap<Response, number>()

export const jsonRpcErrorCode = (response: Response): number | undefined => errorCodes.get(response)

export const errorResponse = (
  id: JsonRpcId,
  status: number,
  code: number,
  message: string,
  data?: unknown,
  headers: Record<string, string> = {}
) => {
  const response = jsonResponse({ jsonrpc: "2.0", id, error: data === undefined ? { code, message } : { code, message, data } }, status, headers)
  errorCodes.set(response, code)
  return response
}
