/**
 * The hot routes (SPEC §9): the handful of requests agents make most, served from Bun's own router
 * instead of going through `HttpRouter` and `HttpApi`'s per-request decoding and middleware chain.
 * They keep every behaviour of the API: the same server span and metrics, the same boundary
 * (request id, rate-limit headers, deadline, problem rendering and the ledger), the same
 * authentication and the same services. Only the routing and the schema plumbing around the
 * handler are done here, by hand, once per route. `HttpApi` still documents these routes, and
 * serves every route not listed here.
 */
import { HttpApiError, type HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { Server } from "bun"
import { Context, Effect, Either, Exit, Runtime, Schema, Tracer } from "effect"
import { Sessions } from "../../services/Sessions.js"
import { SessionId } from "../domain/Session.js"
import type { RouteLookup } from "../telemetry/ServerSpan.js"
import { plainServerSpan, withTraceId } from "../telemetry/ServerSpan.js"
import { authenticateCaller } from "./Auth.js"
import { deadlineFiberId, problemBoundary, restoredDeadline } from "./Boundary.js"
import { trackPeer } from "./RateLimit.js"

export interface HotRoutesOptions {
  readonly requestTimeoutMillis: number
  readonly routeOf: RouteLookup
}

/** Path parameters decode as `HttpApi` decodes them, so a bad id is the same 400 with `/id`. */
const decodePath = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (params: unknown): Effect.Effect<A, HttpApiError.HttpApiDecodeError> =>
    Either.match(decode(params), { onLeft: HttpApiError.HttpApiDecodeError.refailParseError, onRight: Effect.succeed })
}

const decodeSessionPath = decodePath(Schema.Struct({ id: SessionId }))

type BunRouteHandler = (request: Request & { readonly params: Record<string, string> }, server: Server<unknown>) => Response | Promise<Response>

/** What is sent when even the boundary failed (a defect while rendering a failure); it is logged. */
const lastResort = () => new Response(null, { status: 500 })

export const make = (options: HotRoutesOptions) =>
  Effect.gen(function*() {
    const boundary = yield* problemBoundary(options)
    const authenticate = yield* authenticateCaller
    const sessions = yield* Sessions
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const startSpan = plainServerSpan(yield* Effect.tracer, yield* Effect.clock)
    const timeoutMillis = options.requestTimeoutMillis

    /**
     * One route's app under the same server span and boundary as every `HttpApi` route. Each request
     * runs in a fiber of its own that starts with the request and its server span already in its
     * context: providing them inside the fiber would copy its context and references twice each.
     * The fiber runs uninterruptibly but for the route's work, which the deadline (a timer here, not
     * a forked fiber: see `restoredDeadline`) or a client that goes away interrupts, as on every
     * other route. The platform's `toHandled` is not needed: the boundary renders every failure, so
     * what is left (a defect while rendering one) is answered with a bare 500.
     */
    const serve = <E>(path: `/${string}`, app: (params: Record<string, string>) => HttpApp.Default<E, never>): BunRouteHandler => {
      const route = options.routeOf("GET", path.replaceAll(/:[a-z]+/g, "00000000-0000-4000-8000-000000000000"))
      if (route === undefined) throw new Error(`the hot route ${path} is not a route of the API`)
      return (request, server) => {
        const startedAt = Date.now()
        // The peer's address rate limits requests without credentials; for the others it is only
        // asked for if their credential fails or is new here (asking Bun cost about 4 µs a request).
        const address = request.headers.has("authorization") ? undefined : server.requestIP(request)?.address
        const serverRequest = address === undefined
          ? HttpServerRequest.fromWeb(request)
          : HttpServerRequest.fromWeb(request).modify({ remoteAddress: address })
        if (address === undefined) trackPeer(serverRequest, () => server.requestIP(request)?.address)
        const { end, span } = startSpan(serverRequest, route)
        let sent: HttpServerResponse.HttpServerResponse | undefined
        let answer: Response | undefined
        let answered: ((response: Response) => void) | undefined
        const respond = (response: HttpServerResponse.HttpServerResponse) =>
          Effect.sync(() => {
            sent = response
            answer = HttpServerResponse.toWeb(withTraceId(response, span), { withoutBody: request.method === "HEAD", runtime })
            answered?.(answer)
          })
        const settle = (exit: Exit.Exit<unknown, unknown>): Response => {
          // Answered: the fiber's own exit may still be an interruption that came too late to matter.
          if (sent !== undefined) {
            end(Exit.succeed(sent))
            return answer!
          }
          end(exit as Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>)
          // Not a client abort: the boundary itself failed. The span has it; so does the log.
          if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
            runFork(Effect.logError("a hot route failed while answering; sent a bare 500", exit.cause))
          }
          return lastResort()
        }
        const fiber = Runtime.runFork(
          Runtime.make({
            context: runtime.context.pipe(
              Context.add(HttpServerRequest.HttpServerRequest, serverRequest),
              Context.add(Tracer.ParentSpan, span)
            ),
            fiberRefs: runtime.fiberRefs,
            runtimeFlags: runtime.runtimeFlags
          })
        )(Effect.uninterruptibleMask((restore) => Effect.tap(boundary(app(request.params), restoredDeadline(timeoutMillis, restore)), respond)))
        // A fiber starts at once and runs until it waits on something: a read served from memory
        // is answered before it returns, with no timer, listener or promise to set up.
        const done = fiber.unsafePoll()
        if (done !== null) return settle(done)
        return new Promise<Response>((resolve) => {
          answered = resolve
          const deadline = setTimeout(() => fiber.unsafeInterruptAsFork(deadlineFiberId), Math.max(0, startedAt + timeoutMillis - Date.now()))
          fiber.addObserver((exit) => {
            clearTimeout(deadline)
            const response = settle(exit)
            if (response !== answer) resolve(response)
          })
          // As the platform's adapter does: the interruption is marked as the client's, so the span and
          // the metrics record a client abort rather than a server failure.
          request.signal.addEventListener("abort", () => fiber.unsafeInterruptAsFork(HttpServerError.clientAbortFiberId), { once: true })
        })
      }
    }

    // A Session's encoded form is its fields as they are (no transformations), so it is sent as is.
    const getSession = serve("/v1/sessions/:id", (params) =>
      Effect.flatMap(decodeSessionPath(params), ({ id }) =>
        Effect.flatMap(authenticate, (caller) => Effect.map(sessions.get(caller.tenantId, id), HttpServerResponse.unsafeJson)))
    )

    return {
      "/v1/sessions/:id": { GET: getSession }
    } as const
  })
