/**
 * The 2026-07-28 era, written from the revision's text (no SDK speaks it yet): stateless, no
 * `initialize` and no session; every request carries its protocol version and the client's
 * capabilities in `_meta`, mirrored in the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`
 * headers; every result has `resultType`; `server/discover` tells the versions; change
 * notifications flow on the response stream of `subscriptions/listen`. Nothing is kept between
 * requests, so any request may land on any instance.
 */
import { Effect, Either, type Runtime, Stream } from "effect"
import { callTool, type CallContext, lookupTool, observed, readMessages, resourceTemplates, type ResourceFailure, watchMessages } from "./Operations.js"
import { ErrorCodes, errorResponse, idOf, INSTRUCTIONS, jsonResponse, MODERN_VERSION, SERVER_INFO, SUPPORTED_VERSIONS } from "./Protocol.js"
import type { RequestScope } from "./Legacy.js"
import type { McpServices } from "./Runner.js"
import { toolDescriptions } from "./Tools.js"

const PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
const CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
const SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
const SUBSCRIPTION_ID_META = "io.modelcontextprotocol/subscriptionId"

/** Keep-alive comments on a listen stream, so intermediaries do not close a quiet one. */
const KEEP_ALIVE = "15 seconds"

/** Lists and discovery may be cached a minute; they answer only to authenticated callers, hence private. */
const LIST_CACHE = { ttlMs: 60_000, cacheScope: "private" } as const
/** The messages resource changes with every post. */
const READ_CACHE = { ttlMs: 0, cacheScope: "private" } as const

const CAPABILITIES = { tools: { listChanged: false }, resources: { subscribe: true, listChanged: false } } as const

interface JsonRpcRequest {
  readonly jsonrpc: "2.0"
  readonly id: string | number
  readonly method: string
  readonly params: Record<string, unknown> & { readonly _meta: Record<string, unknown> }
}

/** The protocol version a request's `_meta` declares, if it declares one: what marks a request as of this era. */
export const declaredVersion = (body: unknown): string | undefined => {
  const meta = (body as { params?: { _meta?: Record<string, unknown> } } | null)?.params?._meta
  const version = typeof meta === "object" && meta !== null ? meta[PROTOCOL_VERSION_META] : undefined
  return typeof version === "string" ? version : undefined
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/** `=?base64?...?=` is how a header carries a value that is not plain ASCII. */
const decodeHeaderValue = (value: string): string | undefined => {
  if (!value.startsWith("=?base64?") || !value.endsWith("?=")) return value
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(value.slice(9, -2), "base64"))
  } catch {
    return undefined
  }
}

/** What `complete` adds to a result, as JSON for results serialised by hand. */
const COMPLETE_FIELDS = `,"resultType":"complete","_meta":${JSON.stringify({ [SERVER_INFO_META]: SERVER_INFO })}`
const JSON_RESPONSE = { status: 200, headers: { "content-type": "application/json" } } as const

const complete = (result: Record<string, unknown>) => ({
  ...result,
  resultType: "complete",
  _meta: { [SERVER_INFO_META]: SERVER_INFO }
})

const resourceError = (id: string | number, failure: ResourceFailure) =>
  errorResponse(
    id,
    200,
    failure.error._tag === "NotFound" || failure.error._tag === "ValidationFailed" ? ErrorCodes.InvalidParams : ErrorCodes.InternalError,
    `${failure.problem.code}: ${failure.problem.detail} (error_id ${failure.problem.error_id})`,
    failure.problem
  )

const sseEvent = (message: unknown) => `event: message\ndata: ${JSON.stringify(message)}\n\n`

const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no"
} as const

export const makeModern = (runtime: Runtime.Runtime<McpServices>) => {
  /**
   * Checks a request against the revision's rules, in the order a client can act on: a malformed
   * message, missing `_meta`, headers that do not match the body, a version not spoken here.
   */
  const validate = (request: Request, body: unknown): Either.Either<JsonRpcRequest, Response> => {
    const id = idOf(body)
    if (!isObject(body) || body["jsonrpc"] !== "2.0" || typeof body["method"] !== "string" || id === null) {
      return Either.left(errorResponse(id, 400, ErrorCodes.InvalidRequest, "Invalid Request: expected one JSON-RPC 2.0 request with an id"))
    }
    const params = body["params"]
    const meta = isObject(params) ? params["_meta"] : undefined
    if (!isObject(params) || !isObject(meta) || typeof meta[PROTOCOL_VERSION_META] !== "string" || !isObject(meta[CLIENT_CAPABILITIES_META])) {
      return Either.left(errorResponse(id, 400, ErrorCodes.InvalidParams, `Invalid params: _meta must carry ${PROTOCOL_VERSION_META} and ${CLIENT_CAPABILITIES_META}`))
    }
    const version = meta[PROTOCOL_VERSION_META] as string
    const mismatch = (message: string) => Either.left(errorResponse(id, 400, ErrorCodes.HeaderMismatch, `Header mismatch: ${message}`))
    const headerVersion = request.headers.get("mcp-protocol-version")
    if (headerVersion === null) return mismatch("the MCP-Protocol-Version header is required")
    if (headerVersion !== version) return mismatch(`MCP-Protocol-Version header '${headerVersion}' does not match the body's '${version}'`)
    if (version !== MODERN_VERSION) {
      return Either.left(errorResponse(id, 400, ErrorCodes.UnsupportedProtocolVersion, "Unsupported protocol version", {
        supported: SUPPORTED_VERSIONS,
        requested: version
      }))
    }
    const method = body["method"] as string
    const headerMethod = request.headers.get("mcp-method")
    if (headerMethod === null) return mismatch("the Mcp-Method header is required")
    if (headerMethod !== method) return mismatch(`Mcp-Method header '${headerMethod}' does not match the body's '${method}'`)
    if (method === "tools/call" || method === "resources/read") {
      const named = method === "tools/call" ? params["name"] : params["uri"]
      const header = request.headers.get("mcp-name")
      if (header === null) return mismatch("the Mcp-Name header is required")
      if (decodeHeaderValue(header) !== named) return mismatch(`Mcp-Name header '${header}' does not match the body`)
    }
    return Either.right(body as unknown as JsonRpcRequest)
  }

  /** `subscriptions/listen`: an SSE response that stays open and carries the notifications asked for. */
  const listen = (message: JsonRpcRequest, context: CallContext) =>
    Effect.gen(function*() {
      const wanted = isObject(message.params["notifications"]) ? message.params["notifications"] : {}
      const uris = Array.isArray(wanted["resourceSubscriptions"]) ? wanted["resourceSubscriptions"] : []
      const watched = yield* Effect.either(Effect.forEach(uris, (uri) => watchMessages(uri, context)))
      if (Either.isLeft(watched)) return resourceError(message.id, watched.left)
      const watches = watched.right
      const subscription = { [SUBSCRIPTION_ID_META]: message.id }
      const acknowledged = {
        jsonrpc: "2.0",
        method: "notifications/subscriptions/acknowledged",
        // Lists never change here, so only resource subscriptions are honoured.
        params: { _meta: subscription, notifications: uris.length === 0 ? {} : { resourceSubscriptions: uris } }
      }
      const updates = Stream.mergeAll(watches, { concurrency: "unbounded" }).pipe(
        Stream.map((uri) => sseEvent({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { _meta: subscription, uri } }))
      )
      // When every watched session is gone the subscription has nothing left to say: it ends gracefully.
      const ended = sseEvent({ jsonrpc: "2.0", id: message.id, result: { resultType: "complete", _meta: { ...subscription, [SERVER_INFO_META]: SERVER_INFO } } })
      const body = Stream.make(sseEvent(acknowledged)).pipe(
        Stream.concat(watches.length === 0 ? Stream.never : Stream.concat(updates, Stream.make(ended))),
        Stream.merge(Stream.tick(KEEP_ALIVE).pipe(Stream.drop(1), Stream.as(":\n\n")), { haltStrategy: "left" }),
        Stream.encodeText
      )
      return new Response(Stream.toReadableStreamRuntime(body, runtime), { status: 200, headers: SSE_HEADERS })
    })

  const dispatch = (message: JsonRpcRequest, context: CallContext): Effect.Effect<Response, never, McpServices> => {
    const { id, method, params } = message
    const listed = (result: Record<string, unknown>) =>
      observed(method, undefined, context, () => undefined, Effect.sync(() => jsonResponse({ jsonrpc: "2.0", id, result: complete(result) })))
    switch (method) {
      case "server/discover":
        return listed({ supportedVersions: SUPPORTED_VERSIONS, capabilities: CAPABILITIES, instructions: INSTRUCTIONS, ...LIST_CACHE })
      case "tools/list":
        return listed({ tools: toolDescriptions(), ...LIST_CACHE })
      case "resources/templates/list":
        return listed({ resourceTemplates, ...LIST_CACHE })
      case "resources/list":
        return listed({ resources: [], ...LIST_CACHE })
      case "tools/call": {
        const tool = lookupTool(params["name"])
        if (tool === undefined) return Effect.succeed(errorResponse(id, 200, ErrorCodes.InvalidParams, `Unknown tool: ${String(params["name"])}`))
        return Effect.map(callTool(tool, params["arguments"], context), (answer) =>
          new Response(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${answer.toJson(COMPLETE_FIELDS)}}`, JSON_RESPONSE))
      }
      case "resources/read":
        return Effect.match(readMessages(params["uri"], context), {
          onFailure: (failure) => resourceError(id, failure),
          onSuccess: (read) => jsonResponse({ jsonrpc: "2.0", id, result: complete({ ...read, ...READ_CACHE }) })
        })
      case "subscriptions/listen":
        return listen(message, context)
      default:
        return Effect.succeed(errorResponse(id, 404, ErrorCodes.MethodNotFound, `Method not found: ${method}`))
    }
  }

  /** One POST of this era; the edge has authenticated it and parsed its body. */
  const handle = (request: Request, body: unknown, scope: RequestScope): Effect.Effect<Response, never, McpServices> => {
    const accept = request.headers.get("accept") ?? ""
    if (!accept.includes("application/json") || !accept.includes("text/event-stream")) {
      return Effect.succeed(errorResponse(idOf(body), 406, ErrorCodes.InvalidRequest, "Not Acceptable: Accept must list application/json and text/event-stream"))
    }
    // A notification is accepted and has no answer; this revision defines none for HTTP.
    if (isObject(body) && body["jsonrpc"] === "2.0" && typeof body["method"] === "string" && !("id" in body)) {
      return Effect.succeed(new Response(null, { status: 202 }))
    }
    const validated = validate(request, body)
    if (Either.isLeft(validated)) return Effect.succeed(validated.left)
    return dispatch(validated.right, {
      caller: scope.caller,
      protocolVersion: MODERN_VERSION,
      mcpSessionId: undefined,
      jsonRpcId: validated.right.id,
      httpRequestId: scope.httpRequestId,
      userAgent: scope.userAgent,
      span: scope.span
    })
  }

  return { handle } as const
}
