/**
 * `/mcp` (SPEC §11): the second door into the same services. Its edge does what the REST edge does
 * (request id, rate limits, the same bearer credentials, problem bodies for HTTP-level failures,
 * ledgered) plus what the protocol asks: a foreign `Origin` is refused (DNS rebinding), a body is
 * one JSON-RPC message (no batches), and each request goes to its era: a request whose `_meta`
 * declares its version is of the stateless 2026-07-28 revision; anything else is of the session
 * revisions (2025-11-25 and older), which the official SDK's transport serves.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { Server as BunServer } from "bun"
import { Cause, Config, Context, Effect, Exit, Runtime, Schedule, Tracer } from "effect"
import { StartupError } from "../Config.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { Events, type StreamSlot } from "../../services/Events.js"
import { RateLimiter } from "../../services/RateLimiter.js"
import { type AppError, FieldIssue, Forbidden, PayloadTooLarge, type Timeout, UnsupportedMediaType } from "../errors.js"
import { authenticateCaller } from "../http/Auth.js"
import { deadlineFiberId, MAX_BODY_BYTES, restoredDeadline } from "../http/Boundary.js"
import { type InFlightRequest, track } from "../http/InFlight.js"
import { addressBucket, countAgainst, trackPeer } from "../http/RateLimit.js"
import { classify, problemResponse } from "../http/Problem.js"
import { TRACE_ID_HEADER } from "../telemetry/ServerSpan.js"
import { DEFAULT_SESSION_LIMITS, type LegacySessionLimits, makeLegacy, type RequestScope } from "./Legacy.js"
import { declaredVersion, makeModern } from "./Modern.js"
import { ErrorCodes, errorResponse, MODERN_VERSION } from "./Protocol.js"
import type { McpRunner, McpServices } from "./Runner.js"
import { endMessageSpan, messageSpan } from "./Tracing.js"

export const MCP_PATH = "/mcp"
const ROUTE = `POST ${MCP_PATH}`

export interface McpOptions {
  readonly sessions?: Partial<LegacySessionLimits>
  /** How often idle sessions are looked for. */
  readonly sweepEvery?: import("effect").Duration.DurationInput
  /** `BULWARK_REQUEST_TIMEOUT_MS`: an MCP request's answer is due within it, as a REST request's is. */
  readonly requestTimeoutMillis?: number
  /** Origins allowed besides the server's own loopback origins and `BULWARK_MCP_ALLOWED_ORIGINS`. */
  readonly allowedOrigins?: ReadonlyArray<string>
}

const ORIGINS_VARIABLE = "BULWARK_MCP_ALLOWED_ORIGINS"

/**
 * `BULWARK_MCP_ALLOWED_ORIGINS`: comma-separated origins (`https://bulwark.example.com`) a browser
 * may call `/mcp` from, e.g. the public URL behind a proxy. Anything that is not an origin stops the start.
 */
const configuredOrigins = Effect.flatMap(
  Config.string(ORIGINS_VARIABLE).pipe(Config.withDefault("")),
  (raw) =>
    Effect.forEach(raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== ""), (entry) => {
      const origin = URL.canParse(entry) ? new URL(entry).origin : "null"
      return origin === entry
        ? Effect.succeed(entry)
        : Effect.fail(new StartupError(ORIGINS_VARIABLE, `"${entry}" is not an origin (scheme://host[:port], nothing after it)`))
    })
).pipe(Effect.catchTag("ConfigError", (error) => Effect.fail(new StartupError(ORIGINS_VARIABLE, String(error)))))

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
const LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

const tooLarge = new PayloadTooLarge({
  detail: "The request body is over 1 MiB.",
  errors: [new FieldIssue({ pointer: "", detail: "must be at most 1048576 bytes" })]
})

const isJsonMediaType = (contentType: string): boolean => (contentType.split(";")[0]?.trim().toLowerCase() ?? "") === "application/json"

/** A stream's response that gives its slot back once, however it ends; any other answer gives it back at once. */
const holdingSlot = (response: Response, slot: StreamSlot): Response => {
  if (response.status !== 200 || response.body === null || !(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    slot.release()
    return response
  }
  const reader = response.body.getReader()
  const body = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (cause) {
        // The slot comes back; the failure goes on as it came (each era logs its own stream's), not as a clean end.
        slot.release()
        controller.error(cause)
        return
      }
      if (chunk.done) {
        slot.release()
        controller.close()
      } else controller.enqueue(chunk.value)
    },
    cancel: (reason) => {
      slot.release()
      return reader.cancel(reason)
    }
  })
  return new Response(body, { status: response.status, headers: response.headers })
}

export const make = (options: McpOptions = {}) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<McpServices | RateLimiter>()
    const authenticate = yield* authenticateCaller
    const limiter = yield* RateLimiter
    const ledger = yield* ErrorLedger
    const clock = yield* Effect.clock
    const startSpan = messageSpan(yield* Effect.tracer, clock)
    const events = yield* Events
    const run: McpRunner = {
      promise: Runtime.runPromise(runtime),
      fork: Runtime.runFork(runtime)
    }
    const allowedOrigins = [...(yield* configuredOrigins), ...(options.allowedOrigins ?? [])]
    const limits = { ...DEFAULT_SESSION_LIMITS, ...options.sessions }
    const legacy = makeLegacy(run, limits)
    const modern = makeModern(runtime)
    yield* Effect.addFinalizer(() => Effect.promise(() => legacy.closeAll()))
    yield* Effect.promise(() => legacy.sweep(Date.now())).pipe(
      Effect.repeat(Schedule.spaced(options.sweepEvery ?? "1 minute")),
      Effect.forkScoped
    )

    /**
     * DNS rebinding protection: a browser page may only reach `/mcp` from the server's own origin.
     * Clients that are not browsers send no `Origin` and are not affected.
     */
    const originAllowed = (origin: string | null, port: number | undefined) => {
      if (origin === null) return true
      if (allowedOrigins.includes(origin)) return true
      return LOOPBACK_HOSTS.some((host) => origin === `http://${host}:${port}` || origin === `https://${host}:${port}`)
    }

    /**
     * Runs a request's program on the server's runtime. A fiber runs until it first waits, so a
     * call served from memory (authentication, rate count and a cached read) is answered before
     * `runFork` returns, with no promise or timer to set up, as on the REST hot route.
     *
     * `onTimeout` puts the program under the request deadline, as the REST hot route is
     * (`restoredDeadline`): the fiber runs uninterruptibly but for the program, which a timer
     * interrupts once the deadline passes; `onTimeout` answers instead. The answer is kept as soon
     * as it exists, since a fiber the deadline interrupted still ends interrupted. A stream the
     * program answered with (`subscriptions/listen`, the GET stream) lives on past the deadline.
     *
     * `within` (the request and its MCP span) is in the fiber's context from its start, and the span
     * ends with the fiber: providing them inside the fiber would copy its context and references
     * twice per request (as on the REST hot route).
     */
    const deadlineMillis = options.requestTimeoutMillis
    const forkRequest = Runtime.runFork(runtime)
    const forkWithin = (request: HttpServerRequest.HttpServerRequest, span: Tracer.Span | undefined) => {
      const context = Context.add(runtime.context, HttpServerRequest.HttpServerRequest, request)
      return Runtime.runFork(Runtime.make({
        context: span === undefined ? context : Context.add(context, Tracer.ParentSpan, span),
        fiberRefs: runtime.fiberRefs,
        runtimeFlags: runtime.runtimeFlags
      }))
    }
    const runRequest = (
      program: Effect.Effect<Response, never, McpServices | RateLimiter | HttpServerRequest.HttpServerRequest>,
      onTimeout?: (timeout: Timeout) => Effect.Effect<Response>,
      within?: { readonly request: HttpServerRequest.HttpServerRequest; readonly span: Tracer.Span | undefined }
    ): Response | Promise<Response> => {
      let answer: Response | undefined
      const keep = (effect: typeof program) => Effect.tap(effect, (response) => Effect.sync(() => (answer = response)))
      const timed = onTimeout !== undefined && deadlineMillis !== undefined
      const fork = within === undefined ? forkRequest : forkWithin(within.request, within.span)
      const fiber = fork(
        (timed
          ? Effect.uninterruptibleMask((restore) => keep(Effect.catchTag(restoredDeadline(deadlineMillis, restore)(program), "Timeout", onTimeout)))
          : keep(program)) as Effect.Effect<Response, never, McpServices | RateLimiter>
      )
      const settle = (exit: Exit.Exit<Response, never>): Response => {
        if (within?.span !== undefined) endMessageSpan(within.span, clock.unsafeCurrentTimeNanos(), answer === undefined ? exit : Exit.succeed(answer), answer)
        if (answer !== undefined) return answer
        // Every failure was rendered inside the program; what is left is an interruption at shutdown.
        throw Exit.isFailure(exit) ? Cause.squash(exit.cause) : new Error("a request's program ended without an answer")
      }
      const exit = fiber.unsafePoll()
      if (exit !== null) return settle(exit)
      const deadline = timed ? setTimeout(() => fiber.unsafeInterruptAsFork(deadlineFiberId), deadlineMillis) : undefined
      return new Promise((resolve, reject) =>
        fiber.addObserver((done) => {
          clearTimeout(deadline)
          try {
            resolve(settle(done))
          } catch (error) {
            reject(error)
          }
        })
      )
    }

    /** A failure at the HTTP level: ledgered (type `mcp`) and answered as a problem, as REST does. */
    const failed = (error: AppError, request: Request, inFlight: InFlightRequest, span?: Tracer.Span, tenantId?: string) =>
      Effect.map(
        ledger.record(error, {
          type: "mcp",
          route: ROUTE,
          method: request.method,
          requestId: inFlight.requestId,
          traceId: span?.traceId,
          userAgent: inFlight.userAgent,
          tenantId
        }),
        (errorId) => {
          span?.attribute("error.type", error._tag)
          span?.attribute("error.id", errorId)
          return HttpServerResponse.toWeb(problemResponse(error, errorId))
        }
      )

    /** `X-Request-Id` on every response, and `RateLimit-*` on those that were counted. */
    const withEdgeHeaders = (response: Response, inFlight: InFlightRequest): Response => {
      response.headers.set("x-request-id", inFlight.requestId)
      const limited = inFlight.rateLimit
      if (limited !== undefined) {
        response.headers.set("ratelimit-limit", String(limited.limit))
        response.headers.set("ratelimit-remaining", String(limited.remaining))
        response.headers.set("ratelimit-reset", String(limited.reset))
      }
      return response
    }

    /** The checks that need neither the caller nor the body's meaning: origin, method, size, media type, JSON. */
    const refusal = (request: Request, server: BunServer<unknown>, inFlight: InFlightRequest, hasSession: boolean) => {
      if (!originAllowed(request.headers.get("origin"), server.port)) {
        return failed(new Forbidden({ detail: "Requests from this Origin are refused (DNS rebinding protection)." }), request, inFlight)
      }
      if (request.method !== "POST" && !((request.method === "GET" || request.method === "DELETE") && hasSession)) {
        // The stateless era has no GET stream and no session to delete; the session era needs its id.
        return Effect.succeed(
          errorResponse(null, 405, ErrorCodes.InvalidRequest, "Method not allowed: POST a JSON-RPC message (GET and DELETE need an Mcp-Session-Id)", undefined, { allow: "POST" })
        )
      }
      if (Number(request.headers.get("content-length") ?? "0") > MAX_BODY_BYTES) return failed(tooLarge, request, inFlight)
      if (request.method === "POST" && !isJsonMediaType(request.headers.get("content-type") ?? "")) {
        return failed(new UnsupportedMediaType({ detail: "MCP messages must be sent as application/json." }), request, inFlight)
      }
      return undefined
    }

    const parse = (text: string, request: Request, inFlight: InFlightRequest): { readonly body: unknown } | Effect.Effect<Response> => {
      if (Buffer.byteLength(text) > MAX_BODY_BYTES) return failed(tooLarge, request, inFlight)
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        return Effect.succeed(errorResponse(null, 400, ErrorCodes.ParseError, "Parse error: the body is not JSON"))
      }
      if (Array.isArray(body)) {
        return Effect.succeed(errorResponse(null, 400, ErrorCodes.InvalidRequest, "Invalid Request: batches are not supported; send one JSON-RPC message per POST"))
      }
      return { body }
    }

    /** The edge's headers on an answer, whether it is ready or still to come. */
    const withHeaders = (answer: Response | Promise<Response>, inFlight: InFlightRequest, span?: Tracer.Span): Response | Promise<Response> => {
      const finish = (response: Response) => {
        withEdgeHeaders(response, inFlight)
        // As on REST: the trace id a client can quote, here the MCP span's.
        if (span !== undefined) response.headers.set(TRACE_ID_HEADER, span.traceId)
        return response
      }
      return answer instanceof Promise ? answer.then(finish) : finish(answer)
    }

    /** A message whose body (if any) has been parsed: authenticated, then served by its era. */
    const serve = (request: Request, server: BunServer<unknown>, inFlight: InFlightRequest, body: unknown, hasSession: boolean) => {
      // The same credentials and limits as `/v1`: without a credential the client's address is counted.
      const anonymous = request.headers.get("authorization") === null
      // The peer's address counts requests without credentials; for the others it is only asked for
      // if their credential fails or is new here (asking Bun for it costs a few µs).
      const address = anonymous ? server.requestIP(request)?.address : undefined
      const serverRequest = address === undefined ? HttpServerRequest.fromWeb(request) : HttpServerRequest.fromWeb(request).modify({ remoteAddress: address })
      if (address === undefined) trackPeer(serverRequest, () => server.requestIP(request)?.address)
      track(serverRequest, inFlight)
      const authenticated = anonymous
        ? Effect.zipRight(countAgainst(limiter, addressBucket(serverRequest)), authenticate)
        : authenticate
      const modernRequest = request.method === "POST" &&
        (declaredVersion(body) !== undefined || (!hasSession && request.headers.get("mcp-protocol-version") === MODERN_VERSION))

      const span = startSpan(body, request, serverRequest)
      // The session era's GET stream and the stateless era's `subscriptions/listen` are event streams (SPEC §1 caps them).
      const opensStream = request.method === "GET" || (modernRequest && (body as { method?: unknown } | undefined)?.method === "subscriptions/listen")

      const program = authenticated.pipe(
        Effect.matchEffect({
          onFailure: (error) => failed(error, request, inFlight, span),
          onSuccess: (caller): Effect.Effect<Response, never, McpServices> => {
            const scope: RequestScope = { caller, httpRequestId: inFlight.requestId, userAgent: inFlight.userAgent, span }
            const answer = modernRequest
              ? modern.handle(request, body, scope)
              : legacy.callInSession(request, body, scope) ?? Effect.promise(() => legacy.handle(request, body, scope))
            if (!opensStream) return answer
            return Effect.matchEffect(events.admit(caller.keyId), {
              onFailure: (error) => failed(error, request, inFlight, span, caller.tenantId),
              onSuccess: (slot) =>
                answer.pipe(
                  Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Effect.sync(slot.release))),
                  Effect.map((response) => holdingSlot(response, slot))
                )
            })
          }
        }),
        // A defect below the edge (ours or the SDK's): a 500 with an error_id, never a bare one.
        Effect.catchAllDefect((defect) => failed(classify(Cause.die(defect)), request, inFlight, span))
      )
      return withHeaders(runRequest(program, (timeout) => failed(timeout, request, inFlight, span), { request: serverRequest, span }), inFlight, span)
    }

    /**
     * One request to `/mcp`. A call served from memory settles one promise, the body's: the rest
     * answers in line (as the REST hot route does), not through a chain of awaits.
     */
    const handler = (request: Request, server: BunServer<unknown>): Response | Promise<Response> => {
      const given = request.headers.get("x-request-id")
      const requestId = given !== null && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID()
      const inFlight: InFlightRequest = { requestId, userAgent: request.headers.get("user-agent") ?? undefined, rateLimit: undefined }
      // Thrown outside the program (reading the body, the SDK's own code): still a problem with an error_id.
      const defect = (cause: unknown) => withHeaders(runRequest(failed(classify(Cause.die(cause)), request, inFlight)), inFlight)
      try {
        const hasSession = request.headers.has("mcp-session-id")
        const refused = refusal(request, server, inFlight, hasSession)
        if (refused !== undefined) return withHeaders(runRequest(refused), inFlight)
        if (request.method !== "POST") return serve(request, server, inFlight, undefined, hasSession)
        return request.text().then((text) => {
          const parsed = parse(text, request, inFlight)
          return Effect.isEffect(parsed) ? withHeaders(runRequest(parsed), inFlight) : serve(request, server, inFlight, parsed.body, hasSession)
        }).catch(defect)
      } catch (cause) {
        return defect(cause)
      }
    }

    return { [MCP_PATH]: handler } as const
  })
