/**
 * The server span of every request, following the OpenTelemetry HTTP conventions rather than
 * Effect's built-in HTTP tracer (which names spans `http.server GET` and, once our boundary has
 * rendered a failure, marks every span OK). Named `{METHOD} {route template}`; status unset for
 * 1xx–4xx and ERROR for 5xx; `traceparent` honoured; the trace id returned in `X-Trace-Id`; and
 * the request duration recorded in `http.server.request.duration`.
 */
import { HttpApi, HttpApp, HttpMiddleware, HttpServerError, HttpServerRequest, HttpServerResponse, HttpTraceContext } from "@effect/platform"
import type { HttpApiGroup } from "@effect/platform"
import { Clock, Data, Effect, type Exit, Metric, Option } from "effect"
import * as FindMyWay from "find-my-way-ts"
import { httpServerRequestDuration, labelled } from "./Metrics.js"

export type RouteLookup = (method: string, url: string) => string | undefined

/**
 * Route templates of the API, found before routing so the span can be named when it starts. The
 * same router library as `HttpRouter`, so precedence matches.
 */
/**
 * Path parameters may be this long before the router stops matching (its default, 100, would turn
 * a 128-character memory key into 404 ROUTE_NOT_FOUND instead of letting the schema judge it).
 */
export const ROUTER_CONFIG = { maxParamLength: 512 } as const

export const routeTemplates = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E, R>,
  extra: ReadonlyArray<readonly [method: string, path: `/${string}`]> = []
): RouteLookup => {
  const router = FindMyWay.make<string>(ROUTER_CONFIG)
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => router.on(endpoint.method, endpoint.path as `/${string}`, endpoint.path)
  })
  for (const [method, path] of extra) router.on(method, path, path)
  return (method, url) => (router.find(method, url) ?? (method === "HEAD" ? router.find("GET", url) : undefined))?.handler
}

/** A 5xx response: the span ends as ERROR, with this as its exception event. */
class ServerErrorResponse extends Data.TaggedError("ServerErrorResponse")<{
  readonly message: string
  readonly exit: Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>
}> {}

const stringAttribute = (value: unknown): string => (typeof value === "string" ? value : "")

const requestDuration = labelled(httpServerRequestDuration, ["http.request.method", "http.route", "http.response.status_code", "error.type"])

export const serverSpan = (routeOf: RouteLookup) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const route = routeOf(request.method, request.url)
    const started = yield* Clock.currentTimeNanos
    let errorType = ""
    const traced = Effect.useSpan(
      route === undefined ? request.method : `${request.method} ${route}`,
      {
        kind: "server",
        parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(request.headers)),
        captureStackTrace: false,
        attributes: {
          "http.request.method": request.method,
          "url.path": request.url.split("?")[0] ?? request.url,
          ...(route === undefined ? {} : { "http.route": route })
        }
      },
      (span) =>
        app.pipe(
          Effect.withParentSpan(span),
          HttpApp.withPreResponseHandler((_request, response) =>
            Effect.succeed(HttpServerResponse.setHeader(response, "x-trace-id", span.traceId))
          ),
          Effect.exit,
          Effect.flatMap((exit) => {
            const status = HttpServerError.exitResponse(exit).status
            span.attribute("http.response.status_code", status)
            errorType = stringAttribute(span.attributes.get("error.type"))
            return status >= 500
              ? Effect.fail(new ServerErrorResponse({ message: `HTTP ${status} ${errorType}`.trim(), exit }))
              : Effect.succeed(exit)
          })
        )
    )
    const exit = yield* traced.pipe(Effect.catchTag("ServerErrorResponse", (failure) =>
      // It is the exit of `app` itself, carried through the span as a failure.
      Effect.succeed(failure.exit as Exit.Exit<HttpServerResponse.HttpServerResponse, E>)))
    const finished = yield* Clock.currentTimeNanos
    yield* Metric.update(
      requestDuration(
        request.method,
        route ?? "",
        String(HttpServerError.exitResponse(exit).status),
        errorType
      ),
      Number(finished - started) / 1e9
    )
    // The response has already been sent by the handler below; this exit only ends the fiber.
    return yield* exit
  })

/** Turns off Effect's built-in HTTP tracer, which `serverSpan` replaces. */
export const withoutBuiltinTracer = HttpMiddleware.withTracerDisabledWhen(() => true)
