/**
 * The hot routes (SPEC §9): the handful of requests agents make most, served from Bun's own router
 * instead of going through `HttpRouter` and `HttpApi`'s per-request decoding and middleware chain.
 * They keep every behaviour of the API: the same server span and metrics, the same boundary
 * (request id, rate-limit headers, deadline, problem rendering and the ledger), the same
 * authentication and the same services. Only the routing and the schema plumbing around the
 * handler are done here, by hand, once per route. `HttpApi` still documents these routes, and
 * serves every route not listed here.
 */
import { HttpApiError, HttpApp, HttpMiddleware, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { Server } from "bun"
import { Effect, ParseResult, Runtime, Schema } from "effect"
import { Sessions } from "../../services/Sessions.js"
import { SessionId } from "../domain/Session.js"
import type { RouteLookup } from "../telemetry/ServerSpan.js"
import { serverSpan } from "../telemetry/ServerSpan.js"
import { authenticateCaller } from "./Auth.js"
import { problemBoundary } from "./Boundary.js"

export interface HotRoutesOptions {
  readonly requestTimeoutMillis: number
  readonly routeOf: RouteLookup
}

/** Path parameters decode as `HttpApi` decodes them, so a bad id is the same 400 with `/id`. */
const decodePath = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(schema)
  return (params: unknown) => decode(params).pipe(Effect.catchIf(ParseResult.isParseError, HttpApiError.HttpApiDecodeError.refailParseError))
}

const decodeSessionPath = decodePath(Schema.Struct({ id: SessionId }))

const RESOLVE = Symbol.for("bulwark/HotRoutes/resolve")

type BunRouteHandler = (request: Request & { readonly params: Record<string, string> }, server: Server<unknown>) => Promise<Response>

export const make = (options: HotRoutesOptions) =>
  Effect.gen(function*() {
    const boundary = yield* problemBoundary({ requestTimeoutMillis: options.requestTimeoutMillis })
    const authenticate = yield* authenticateCaller
    const sessions = yield* Sessions
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)

    /**
     * One route's app, wrapped as `HttpApiBuilder.serve` wraps the API (the server span as the
     * serving middleware, so its response header is applied; then the boundary) and answered the
     * way the Bun adapter answers. A client that goes away
     * interrupts the work, as on every other route.
     */
    const span = serverSpan(options.routeOf)
    const serve = <E>(app: (params: Record<string, string>) => HttpApp.Default<E, never>): BunRouteHandler => {
      const respond = (request: HttpServerRequest.HttpServerRequest, response: HttpServerResponse.HttpServerResponse) =>
        Effect.sync(() => {
          const resolve = (request as unknown as Record<symbol, (response: Response) => void>)[RESOLVE]
          resolve?.(HttpServerResponse.toWeb(response, { withoutBody: request.method === "HEAD", runtime }))
        })
      return (request, server) =>
        new Promise<Response>((resolve) => {
          const address = server.requestIP(request)?.address
          const serverRequest = address === undefined
            ? HttpServerRequest.fromWeb(request)
            : HttpServerRequest.fromWeb(request).modify({ remoteAddress: address })
          ;(serverRequest as unknown as Record<symbol, unknown>)[RESOLVE] = resolve
          const handled = HttpApp.toHandled(boundary(Effect.interruptible(app(request.params))), respond, span).pipe(
            // Our own server span replaces the platform's tracer, as on the HttpApi routes.
            Effect.locally(HttpMiddleware.currentTracerDisabledWhen, () => true),
            Effect.provideService(HttpServerRequest.HttpServerRequest, serverRequest)
          )
          const fiber = runFork(handled)
          // As the platform's adapter does: the interruption is marked as the client's, so the span and
          // the metrics record a client abort rather than a server failure.
          request.signal.addEventListener("abort", () => fiber.unsafeInterruptAsFork(HttpServerError.clientAbortFiberId), { once: true })
        })
    }

    const getSession = serve((params) =>
      Effect.gen(function*() {
        const { id } = yield* decodeSessionPath(params)
        const caller = yield* authenticate
        // A Session's encoded form is its fields as they are (no transformations), so it is sent as is.
        return HttpServerResponse.unsafeJson(yield* sessions.get(caller.tenantId, id))
      })
    )

    return {
      "/v1/sessions/:id": { GET: getSession }
    } as const
  })
