/**
 * The 2025-11-25 era (and older revisions, negotiated down by the SDK): `initialize`,
 * `Mcp-Session-Id`, the GET stream, `DELETE`, `resources/subscribe`, served by the official SDK's
 * web-standard Streamable HTTP transport and low-level `Server`, one pair per MCP session, whose
 * handlers call the shared operations through the server's runtime.
 *
 * Sessions live in this process. They are bound to the API key that opened them (another key gets
 * 404, as for an unknown id), bounded per key and per process (the least recently used goes
 * first), and closed after an idle period unless a GET stream is open, so a client that never
 * sends `DELETE` cannot grow memory without end.
 */
import type { Server } from "@modelcontextprotocol/sdk/server/index.js"
import type { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js"
import { Effect, Either, Fiber, Stream, type Tracer } from "effect"
import type { Principal } from "../domain/Principal.js"
import { sanitizeText } from "../telemetry/Sanitize.js"
import { callTool, type CallContext, lookupTool, observed, readMessages, resourceTemplates, type ResourceFailure, watchMessages } from "./Operations.js"
import { ErrorCodes, errorResponse, idOf, INSTRUCTIONS, LEGACY_VERSIONS, SERVER_INFO } from "./Protocol.js"
import { toolDescriptions } from "./Tools.js"
import type { McpRunner, McpServices } from "./Runner.js"

export interface LegacySessionLimits {
  /** Sessions one API key may hold open; past it its least recently used one is closed. */
  readonly perKey: number
  /** Sessions this process holds; past it the least recently used one is closed. */
  readonly total: number
  /** A session without requests or an open GET stream for this long is closed. */
  readonly idleMillis: number
}

export const DEFAULT_SESSION_LIMITS: LegacySessionLimits = { perKey: 32, total: 10_000, idleMillis: 30 * 60_000 }

/** What the edge knows of the HTTP request that carries an MCP message. */
export interface RequestScope {
  readonly caller: Principal
  readonly httpRequestId: string
  readonly userAgent: string | undefined
  /** The MCP server span the edge opened for this message, if it carries one. */
  readonly span: Tracer.Span | undefined
}

interface LegacySession {
  readonly id: string
  readonly keyId: string
  readonly server: Server
  readonly transport: WebStandardStreamableHTTPServerTransport
  readonly subscriptions: Map<string, Fiber.RuntimeFiber<void, unknown>>
  protocolVersion: string
  lastSeen: number
  openStreams: number
  closed: boolean
}

type Sdk = typeof import("./Sdk.js")
let loaded: Sdk | undefined
/** The SDK, once the first session has loaded it (every use below comes after `open` has). */
const sdk = (): Sdk => loaded!
const loadSdk = async (): Promise<Sdk> => (loaded ??= await import("./Sdk.js"))

const SCOPE_KEY = "bulwark"
const OPENED = new TextEncoder().encode(": open\n\n")

const scopeOf = (authInfo: AuthInfo | undefined): RequestScope => {
  const scope = authInfo?.extra?.[SCOPE_KEY] as RequestScope | undefined
  // The edge authenticates every request before the transport sees it; a request without a scope is our bug.
  if (scope === undefined) throw new (sdk().McpError)(ErrorCodes.InternalError, "request reached a handler without its caller")
  return scope
}

/** The 2025-11-25 codes for a resource failure; the problem object rides in `data`. */
const resourceError = (failure: ResourceFailure) => {
  const code = failure.error._tag === "NotFound"
    ? ErrorCodes.ResourceNotFound
    : failure.error._tag === "ValidationFailed"
    ? ErrorCodes.InvalidParams
    : ErrorCodes.InternalError
  return new (sdk().McpError)(code, `${failure.problem.code}: ${failure.problem.detail} (error_id ${failure.problem.error_id})`, failure.problem)
}

export const makeLegacy = (run: McpRunner, limits: LegacySessionLimits) => {
  // Insertion order is recency order: a session is moved to the end whenever it is used.
  const sessions = new Map<string, LegacySession>()

  const touch = (session: LegacySession) => {
    session.lastSeen = Date.now()
    sessions.delete(session.id)
    sessions.set(session.id, session)
  }

  const close = async (session: LegacySession) => {
    if (session.closed) return
    session.closed = true
    sessions.delete(session.id)
    for (const fiber of session.subscriptions.values()) run.fork(Fiber.interrupt(fiber))
    session.subscriptions.clear()
    await session.server.close()
  }

  /** Makes room for one more session of `keyId`: the least recently used go first. */
  const makeRoom = async (keyId: string) => {
    const ofKey = [...sessions.values()].filter((s) => s.keyId === keyId)
    for (const session of ofKey.slice(0, Math.max(0, ofKey.length - limits.perKey + 1))) await close(session)
    for (const session of [...sessions.values()].slice(0, Math.max(0, sessions.size - limits.total + 1))) await close(session)
  }

  const contextOf = (session: LegacySession, scope: RequestScope, jsonRpcId: string | number): CallContext => ({
    caller: scope.caller,
    protocolVersion: session.protocolVersion,
    mcpSessionId: session.id,
    jsonRpcId,
    httpRequestId: scope.httpRequestId,
    userAgent: scope.userAgent,
    span: scope.span
  })

  /** Runs a handler's work under the request's span: the SDK calls handlers outside the edge's fiber. */
  const runIn = <A>(scope: RequestScope, effect: Effect.Effect<A, never, McpServices>): Promise<A> =>
    run.promise(scope.span === undefined ? effect : Effect.withParentSpan(effect, scope.span))

  const listed = <A>(session: LegacySession, scope: RequestScope, method: string, jsonRpcId: string | number, result: A) =>
    runIn(scope, observed(method, undefined, contextOf(session, scope, jsonRpcId), () => undefined, Effect.succeed(result)))

  const subscribe = async (session: LegacySession, scope: RequestScope, jsonRpcId: string | number, uri: string) => {
    const watched = await runIn(scope, Effect.either(watchMessages(uri, contextOf(session, scope, jsonRpcId))))
    if (Either.isLeft(watched)) throw resourceError(watched.left)
    const previous = session.subscriptions.get(uri)
    const fiber = run.fork(
      Stream.runForEach(watched.right, (updated) =>
        Effect.tryPromise(() => session.server.sendResourceUpdated({ uri: updated })).pipe(Effect.tap(() => Effect.sync(() => touch(session))))).pipe(
          // The transport closed under it: the session is gone, and so is its subscription.
          Effect.tapErrorCause((cause) => Effect.logDebug("an MCP subscription ended because its session's transport closed", cause)),
          Effect.ensuring(Effect.sync(() => {
            if (session.subscriptions.get(uri) === fiber) session.subscriptions.delete(uri)
          }))
        )
    )
    session.subscriptions.set(uri, fiber)
    if (previous !== undefined) run.fork(Fiber.interrupt(previous))
  }

  const serverFor = (session: () => LegacySession) => {
    const {
      CallToolRequestSchema,
      ListResourcesRequestSchema,
      ListResourceTemplatesRequestSchema,
      ListToolsRequestSchema,
      McpError,
      ReadResourceRequestSchema,
      Server,
      SubscribeRequestSchema,
      UnsubscribeRequestSchema
    } = sdk()
    const server = new Server(
      { ...SERVER_INFO },
      { capabilities: { tools: { listChanged: false }, resources: { subscribe: true, listChanged: false } }, instructions: INSTRUCTIONS }
    )
    server.setRequestHandler(ListToolsRequestSchema, (_request, extra) =>
      listed(session(), scopeOf(extra.authInfo), "tools/list", extra.requestId, { tools: [...toolDescriptions()] }))
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const tool = lookupTool(request.params.name)
      if (tool === undefined) throw new McpError(ErrorCodes.InvalidParams, `Unknown tool: ${request.params.name}`)
      const scope = scopeOf(extra.authInfo)
      const answer = await runIn(scope, callTool(tool, request.params.arguments, contextOf(session(), scope, extra.requestId)))
      return answer.toResult()
    })
    server.setRequestHandler(ListResourceTemplatesRequestSchema, (_request, extra) =>
      listed(session(), scopeOf(extra.authInfo), "resources/templates/list", extra.requestId, { resourceTemplates }))
    // Every resource is an instance of the template; there is no fixed list to enumerate.
    server.setRequestHandler(ListResourcesRequestSchema, (_request, extra) =>
      listed(session(), scopeOf(extra.authInfo), "resources/list", extra.requestId, { resources: [] }))
    server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
      const scope = scopeOf(extra.authInfo)
      const read = await runIn(scope, Effect.either(readMessages(request.params.uri, contextOf(session(), scope, extra.requestId))))
      if (Either.isLeft(read)) throw resourceError(read.left)
      return read.right
    })
    server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
      await subscribe(session(), scopeOf(extra.authInfo), extra.requestId, request.params.uri)
      return {}
    })
    server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
      const fiber = session().subscriptions.get(request.params.uri)
      session().subscriptions.delete(request.params.uri)
      if (fiber !== undefined) run.fork(Fiber.interrupt(fiber))
      return {}
    })
    return server
  }

  /** A GET stream keeps its session from idling out while it is open. */
  const counted = (session: LegacySession, response: Response): Response => {
    if (response.status !== 200 || response.body === null) return response
    session.openStreams++
    let open = true
    const done = () => {
      if (open) {
        open = false
        session.openStreams--
        session.lastSeen = Date.now()
      }
    }
    const reader = response.body.getReader()
    const body = new ReadableStream<Uint8Array>({
      // A comment at once, so the client has the response's headers before the first event.
      start: (controller) => controller.enqueue(OPENED),
      pull: async (controller) => {
        // The transport's stream failing ends the client's stream; it is logged, not swallowed.
        const chunk = await reader.read().catch((cause: unknown) => {
          run.fork(Effect.logWarning("an MCP GET stream ended because its transport's stream failed").pipe(
            Effect.annotateLogs({ cause: sanitizeText(cause instanceof Error ? cause.message : String(cause)) })
          ))
          return { done: true as const, value: undefined }
        })
        if (chunk.done) {
          done()
          controller.close()
        } else controller.enqueue(chunk.value)
      },
      cancel: (reason) => {
        done()
        return reader.cancel(reason)
      }
    })
    return new Response(body, { status: response.status, headers: response.headers })
  }

  const authInfoOf = (scope: RequestScope): AuthInfo => ({ token: "", clientId: scope.caller.keyId, scopes: [], extra: { [SCOPE_KEY]: scope } })

  const open = async (request: Request, body: unknown, scope: RequestScope): Promise<Response> => {
    const { WebStandardStreamableHTTPServerTransport } = await loadSdk()
    await makeRoom(scope.caller.keyId)
    const requested = (body as { params?: { protocolVersion?: unknown } }).params?.protocolVersion
    let session: LegacySession | undefined
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => crypto.randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => {
        // The initialize's span is still open: the edge waits for the SDK's answer.
        scope.span?.attribute("mcp.session.id", id)
        session = {
          id,
          keyId: scope.caller.keyId,
          server,
          transport,
          subscriptions: new Map(),
          protocolVersion: typeof requested === "string" && LEGACY_VERSIONS.includes(requested) ? requested : LEGACY_VERSIONS[0]!,
          lastSeen: Date.now(),
          openStreams: 0,
          closed: false
        }
        sessions.set(id, session)
      },
      onsessionclosed: (id) => {
        const closing = sessions.get(id)
        if (closing !== undefined) void close(closing)
      }
    })
    const server = serverFor(() => session!)
    await server.connect(transport)
    const response = await transport.handleRequest(request, { parsedBody: body, authInfo: authInfoOf(scope) })
    // The SDK refused the initialize (a malformed one): nothing was opened, nothing is kept.
    if (session === undefined) await server.close()
    return response
  }

  /** One HTTP request of the session era; the edge has authenticated it and parsed its body. */
  const handle = async (request: Request, body: unknown, scope: RequestScope): Promise<Response> => {
    const sessionId = request.headers.get("mcp-session-id")
    const isInitialize = (body as { method?: unknown } | undefined)?.method === "initialize"
    if (sessionId === null) {
      if (request.method === "POST" && isInitialize) return open(request, body, scope)
      return errorResponse(idOf(body), 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)")
    }
    const session = sessions.get(sessionId)
    // Another key's session is as unknown as an ended one.
    if (session === undefined || session.keyId !== scope.caller.keyId) {
      return errorResponse(idOf(body), 404, -32001, "Session not found")
    }
    touch(session)
    const response = await session.transport.handleRequest(request, { parsedBody: body, authInfo: authInfoOf(scope) })
    return request.method === "GET" ? counted(session, response) : response
  }

  /**
   * A `tools/call` in an open session of this key, answered by the operations both eras share: the
   * session's state plays no part in it, and the SDK's parsing and result validation would double
   * its cost. Anything else (and any request the SDK would refuse) is left to `handle`.
   */
  const callInSession = (request: Request, body: unknown, scope: RequestScope): Effect.Effect<Response, never, McpServices> | undefined => {
    const sessionId = request.headers.get("mcp-session-id")
    const message = body as { jsonrpc?: unknown; method?: unknown; params?: { name?: unknown; arguments?: unknown } } | undefined
    const id = idOf(body)
    if (sessionId === null || request.method !== "POST" || message?.jsonrpc !== "2.0" || message.method !== "tools/call" || id === null) return undefined
    if (typeof message.params?.name !== "string") return undefined
    const version = request.headers.get("mcp-protocol-version")
    if (version !== null && !LEGACY_VERSIONS.includes(version)) return undefined
    const accept = request.headers.get("accept") ?? ""
    if (!accept.includes("application/json") || !accept.includes("text/event-stream")) return undefined
    const session = sessions.get(sessionId)
    if (session === undefined || session.closed || session.keyId !== scope.caller.keyId) return undefined
    touch(session)
    const headers = { "mcp-session-id": session.id }
    const tool = lookupTool(message.params.name)
    if (tool === undefined) return Effect.succeed(errorResponse(id, 200, ErrorCodes.InvalidParams, `Unknown tool: ${message.params.name}`, undefined, headers))
    return Effect.map(callTool(tool, message.params.arguments, contextOf(session, scope, id)), (answer) =>
      new Response(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${answer.toJson()}}`, {
        status: 200,
        headers: { "content-type": "application/json", "mcp-session-id": session.id }
      }))
  }

  /** Closes the sessions idle past the limit; run periodically. */
  const sweep = async (now: number) => {
    for (const session of [...sessions.values()]) {
      if (session.openStreams === 0 && now - session.lastSeen > limits.idleMillis) await close(session)
    }
  }

  const closeAll = async () => {
    for (const session of [...sessions.values()]) await close(session)
  }

  return { handle, callInSession, sweep, closeAll, size: () => sessions.size } as const
}

export type Legacy = ReturnType<typeof makeLegacy>
