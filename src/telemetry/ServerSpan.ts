/**
 * The server span of every request, following the OpenTelemetry HTTP conventions rather than
 * Effect's built-in HTTP tracer (which names spans `http.server GET` and, once our boundary has
 * rendered a failure, marks every span OK). Named `{METHOD} {route template}`; status unset for
 * 1xx–4xx and ERROR for 5xx; `traceparent` honoured; the trace id returned in `X-Trace-Id`; and
 * the request duration recorded in `http.server.request.duration`.
 */
import { HttpApi, HttpServerError, type HttpServerRequest, HttpServerResponse, HttpTraceContext } from "@effect/platform"
import type { HttpApiGroup } from "@effect/platform"
import { Cause, type Clock, Context, Data, Exit, type FiberId, HashSet, Option, type Tracer } from "effect"
import * as FindMyWay from "find-my-way-ts"
import { httpServerRequestDuration, labelled } from "./Metrics.js"

export type RouteLookup = (method: string, url: string) => string | undefined

/**
 * Path parameters may be this long before the router stops matching (its default, 100, would turn
 * a 128-character memory key into 404 ROUTE_NOT_FOUND instead of letting the schema judge it).
 */
export const ROUTER_CONFIG = { maxParamLength: 512 } as const

/** Route templates of the API, by the same router library and settings as the executor (the contract checks use it). */
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

/** The trace id its client can quote, on every response (set by the boundary). */
export const TRACE_ID_HEADER = "x-trace-id"


/** The server span's name and options: `{METHOD} {route}`, the request's `traceparent` as parent. */
const spanOf = (request: HttpServerRequest.HttpServerRequest, route: string | undefined) => ({
  name: route === undefined ? request.method : `${request.method} ${route}`,
  options: {
    kind: "server",
    parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(request.headers)),
    captureStackTrace: false,
    attributes: {
      "http.request.method": request.method,
      "url.path": request.url.split("?")[0] ?? request.url,
      ...(route === undefined ? {} : { "http.route": route })
    }
  } satisfies Tracer.SpanOptions
})

/**
 * What a finished request leaves on its span: the status code, and for a 5xx the failure the span
 * ends with. `error.type` was set on the span by the boundary when it rendered a failure.
 */
/** A cause that is nothing but an interruption by `fiberId`. */
export const interruptedOnlyBy = (cause: Cause.Cause<unknown>, fiberId: FiberId.FiberId): cause is Cause.Cause<never> =>
  Cause.isInterruptedOnly(cause) && HashSet.has(Cause.interruptors(cause), fiberId)

/** A client that went away: the request was abandoned, there is nobody to answer and nothing to ledger. */
export const isClientAbort = (cause: Cause.Cause<unknown>): cause is Cause.Cause<never> =>
  interruptedOnlyBy(cause, HttpServerError.clientAbortFiberId)

/** 499 for a client that went away (as the platform answers it), not the 500 `exitResponse` would make of any interruption. */
const statusOfExit = <E>(exit: Exit.Exit<HttpServerResponse.HttpServerResponse, E>): number =>
  Exit.isFailure(exit) && isClientAbort(exit.cause) ? CLIENT_CLOSED_REQUEST : HttpServerError.exitResponse(exit).status

const CLIENT_CLOSED_REQUEST = 499

const settle = <E>(span: Tracer.Span, exit: Exit.Exit<HttpServerResponse.HttpServerResponse, E>) => {
  const status = statusOfExit(exit)
  span.attribute("http.response.status_code", status)
  const errorType = stringAttribute(span.attributes.get("error.type"))
  const failure = status >= 500 ? new ServerErrorResponse({ message: `HTTP ${status} ${errorType}`.trim(), exit }) : undefined
  return { status, errorType, failure }
}

/**
 * The server span and duration metric of a request, whose fiber the executor starts: begun before
 * the fiber, so that the fiber can start with the span already in its context, and ended when the
 * fiber exits. Providing the span inside the fiber would copy its context and references twice per
 * request. The caller knows its route template (none for a path no route has).
 */
export const plainServerSpan = (tracer: Tracer.Tracer, clock: Clock.Clock) => {
  // The duration metric per label set, kept by this server rather than the module.
  const requestDuration = labelled(httpServerRequestDuration, ["http.request.method", "http.route", "http.response.status_code", "error.type"])
  return (request: HttpServerRequest.HttpServerRequest, route: string | undefined) => {
    const started = clock.unsafeCurrentTimeNanos()
    const { name, options } = spanOf(request, route)
    const span = tracer.span(name, Option.fromNullable(options.parent), Context.empty(), [], started, "server", options)
    for (const [key, value] of Object.entries(options.attributes)) span.attribute(key, value)
    const end = <E>(exit: Exit.Exit<HttpServerResponse.HttpServerResponse, E>) => {
      const { errorType, failure, status } = settle(span, exit)
      const finished = clock.unsafeCurrentTimeNanos()
      span.end(finished, failure === undefined ? exit : Exit.fail(failure))
      requestDuration(request.method, route ?? "", String(status), errorType).unsafeUpdate(Number(finished - started) / 1e9, [])
    }
    return { span, end }
  }
}
