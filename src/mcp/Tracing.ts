/**
 * The server span of one MCP message, as OpenTelemetry's MCP conventions describe it: named
 * `{mcp.method.name} {tool}`, and a child of the trace context the message carries in
 * `params._meta` (`traceparent`, SEP-414). MCP's context and the HTTP request's are independent (one
 * MCP request may be retried over several HTTP requests), so when both are given the message's
 * context is the parent and the HTTP `traceparent` a link; given alone, the HTTP one is the parent,
 * as on every REST route, and read as REST reads it. A `traceparent` in `_meta` that is not W3C's
 * format is ignored.
 */
import { type HttpServerRequest, HttpTraceContext } from "@effect/platform"
import { type Clock, Context, Data, Exit, Option, type Tracer } from "effect"
import { fromMeta } from "../telemetry/TraceContext.js"
import { lookupTool } from "./Operations.js"
import { jsonRpcErrorCode } from "./Protocol.js"

/** Method names are the client's to choose: any other is named `_OTHER`, so spans stay few. */
const KNOWN_METHODS: ReadonlySet<string> = new Set([
  "initialize",
  "ping",
  "server/discover",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "subscriptions/listen",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
  "notifications/initialized",
  "notifications/cancelled",
  "notifications/roots/list_changed"
])

const WITH_RESOURCE_URI: ReadonlySet<string> = new Set(["resources/read", "resources/subscribe", "resources/unsubscribe"])

const SPAN_OPTIONS: Tracer.SpanOptions = { kind: "server", captureStackTrace: false }

interface Message {
  readonly method?: unknown
  readonly id?: unknown
  readonly params?: { readonly name?: unknown; readonly uri?: unknown; readonly _meta?: unknown }
}

/** The HTTP request's own trace context; its headers are only read when one is there. */
const transportContext = (request: Request, serverRequest: HttpServerRequest.HttpServerRequest): Tracer.ExternalSpan | undefined =>
  request.headers.has("traceparent") || request.headers.has("b3") || request.headers.has("x-b3-traceid")
    ? Option.getOrUndefined(HttpTraceContext.fromHeaders(serverRequest.headers))
    : undefined

/**
 * Opens the span of a JSON-RPC message, or answers `undefined` for a body that is not one (nothing
 * to name it by). It is begun before the request's fiber, which starts with it in its context; the
 * caller ends it.
 */
export const messageSpan = (tracer: Tracer.Tracer, clock: Clock.Clock) =>
(
  body: unknown,
  request: Request,
  serverRequest: HttpServerRequest.HttpServerRequest
): Tracer.Span | undefined => {
  if (typeof body !== "object" || body === null) return undefined
  const message = body as Message
  if (typeof message.method !== "string") return undefined
  const method = KNOWN_METHODS.has(message.method) ? message.method : "_OTHER"
  const params = typeof message.params === "object" && message.params !== null ? message.params : undefined
  const tool = method === "tools/call" ? lookupTool(params?.name)?.name : undefined

  const carried = fromMeta(params?._meta)
  const transport = transportContext(request, serverRequest)
  const parent = carried ?? transport
  const links: ReadonlyArray<Tracer.SpanLink> = carried !== undefined && transport !== undefined && transport.spanId !== carried.spanId
    ? [{ _tag: "SpanLink", span: transport, attributes: {} }]
    : []
  const name = tool === undefined ? method : `${method} ${tool}`
  const span = tracer.span(name, Option.fromNullable(parent), Context.empty(), links, clock.unsafeCurrentTimeNanos(), "server", SPAN_OPTIONS)

  span.attribute("mcp.method.name", method)
  const id = message.id
  if (typeof id === "string" || typeof id === "number") span.attribute("jsonrpc.request.id", String(id))
  if (tool !== undefined) {
    span.attribute("gen_ai.tool.name", tool)
    span.attribute("gen_ai.operation.name", "execute_tool")
  }
  if (WITH_RESOURCE_URI.has(method) && typeof params?.uri === "string") span.attribute("mcp.resource.uri", params.uri)
  const sessionId = request.headers.get("mcp-session-id")
  if (sessionId !== null) span.attribute("mcp.session.id", sessionId)
  return span
}

/** What a failed MCP operation's span ends with: its status is ERROR, and this its exception event. */
class McpOperationFailed extends Data.TaggedError("McpOperationFailed")<{ readonly message: string }> {}

/**
 * Ends a message's span. The program always answers (failures are rendered as results), so the
 * conventions' rule decides the status: ERROR whenever `error.type` was set on the span, which is
 * where a tool error, a resource failure or a refusal at the edge is recorded with its ledger id.
 * A JSON-RPC error answered here records its code, as `error.type` too when nothing more precise
 * (a problem's tag) is there.
 */
export const endMessageSpan = (span: Tracer.Span, endTime: bigint, exit: Exit.Exit<unknown, unknown>, answer: Response | undefined): void => {
  const code = answer === undefined ? undefined : jsonRpcErrorCode(answer)
  if (code !== undefined) {
    span.attribute("rpc.response.status_code", String(code))
    if (!span.attributes.has("error.type")) span.attribute("error.type", String(code))
  }
  const errorType = span.attributes.get("error.type")
  span.end(endTime, Exit.isSuccess(exit) && typeof errorType === "string" ? Exit.fail(new McpOperationFailed({ message: errorType })) : exit)
}
