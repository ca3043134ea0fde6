/**
 * The edge every request passes: request id in and out, the body rules (JSON only, at most 1 MiB,
 * parsable), the request deadline, and the problem rendering of every failure below it, including
 * unknown routes and defects. The executor (`Executor.ts`) runs every route inside it.
 */
import { HttpMethod, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, FiberId, type Tracer } from "effect"
import { TENANT_ATTRIBUTE } from "../../services/Auth.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { RateLimiter } from "../../services/RateLimiter.js"
import { CONSOLE_COOKIE } from "../Api.js"
import { type AppError, FieldIssue, MethodNotAllowed, PayloadTooLarge, Timeout, UnsupportedMediaType, ValidationFailed } from "../errors.js"
import { sanitizePayload } from "../telemetry/Sanitize.js"
import { interruptedOnlyBy, isClientAbort, type RouteLookup, TRACE_ID_HEADER } from "../telemetry/ServerSpan.js"
import { type InFlightRequest, type RateLimitHeaders, track } from "./InFlight.js"
import { addressBucket, countAgainst } from "./RateLimit.js"
import { classify, problemResponse } from "./Problem.js"

export const MAX_BODY_BYTES = 1024 * 1024

const REQUEST_ID_HEADER = "x-request-id"
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The client's `X-Request-Id` when it is a sane token, else a fresh one. */
const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const given = request.headers[REQUEST_ID_HEADER]
  return given !== undefined && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID()
}

const tooLarge = new PayloadTooLarge({
  detail: "The request body is over 1 MiB.",
  errors: [new FieldIssue({ pointer: "", detail: "must be at most 1048576 bytes" })]
})

const isJsonMediaType = (contentType: string): boolean => {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? ""
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"))
}

/**
 * The router ends a path at `;` (as at `?`), so `/memory/a;b` would silently address key `a`. No
 * route of ours takes a `;`: such a path is refused rather than misread.
 */
const semicolonInPath = (request: HttpServerRequest.HttpServerRequest): ValidationFailed | undefined => {
  const query = request.url.indexOf("?")
  const path = query === -1 ? request.url : request.url.slice(0, query)
  return path.includes(";")
    ? new ValidationFailed({
      detail: "The path contains a ';', which no route accepts.",
      errors: [new FieldIssue({ pointer: "", detail: "the path must not contain ';'" })]
    })
    : undefined
}

/**
 * Checks the body before any route sees it, and keeps its text (for the ledger) and its JSON (for
 * the route's decoder), so the body is read and parsed once.
 */
const guardBody = (request: HttpServerRequest.HttpServerRequest, read: RequestBody): Effect.Effect<void, AppError> =>
  Effect.gen(function*() {
    if (!HttpMethod.hasBody(request.method)) return
    const declaredLength = Number(request.headers["content-length"] ?? "0")
    const chunked = request.headers["transfer-encoding"] !== undefined
    if (declaredLength > MAX_BODY_BYTES) return yield* tooLarge
    const contentType = request.headers["content-type"] ?? ""
    // A declared media type is checked even without a body: the platform would otherwise pick its
    // form or multipart reader by it, and the multipart reader dies on an empty body (a 500).
    const empty = declaredLength === 0 && !chunked
    if (!isJsonMediaType(contentType) && (!empty || contentType.trim() !== "")) {
      return yield* new UnsupportedMediaType({ detail: "Request bodies must be application/json." })
    }
    if (empty) return
    const text = yield* Effect.tryPromise(() => (request.source as Request).text()).pipe(
      Effect.mapError(() =>
        new ValidationFailed({
          detail: "The request body could not be read.",
          errors: [new FieldIssue({ pointer: "", detail: "must be a complete JSON document" })]
        })
      )
    )
    if (Buffer.byteLength(text) > MAX_BODY_BYTES) return yield* tooLarge
    read.text = text
    try {
      read.json = JSON.parse(text)
    } catch {
      return yield* new ValidationFailed({
        detail: "The request body is not valid JSON.",
        errors: [new FieldIssue({ pointer: "", detail: "must be a JSON document" })]
      })
    }
  })

/** Health probes are never limited: `/health/live` must not touch a dependency, and the counters may live in Redis. */
const isHealthProbe = (url: string): boolean => url === "/health" || url.startsWith("/health/") || url.startsWith("/health?")

const SESSION_PATH = /^\/v1\/sessions\/([0-9a-fA-F-]{36})(?:\/|$)/

const stringAttribute = (span: Tracer.Span, name: string): string | undefined => {
  const value = span.attributes.get(name)
  return typeof value === "string" ? value : undefined
}

/**
 * Records a failure (ledger row, log line, metric, span attributes) under one fresh `error_id`
 * and renders it. What the request was is read from the request and from the server span, on
 * which the executor has set `http.route` and the authentication the tenant.
 */
const renderFailure = (
  ledger: ErrorLedger,
  error: AppError,
  request: HttpServerRequest.HttpServerRequest,
  requestId: string,
  body: string | undefined,
  span: Tracer.Span
) =>
  Effect.map(
    ledger.record(error, {
      requestId,
      traceId: span.traceId,
      method: request.method,
      route: stringAttribute(span, "http.route"),
      userAgent: request.headers["user-agent"],
      tenantId: stringAttribute(span, TENANT_ATTRIBUTE),
      sessionId: SESSION_PATH.exec(request.url)?.[1]?.toLowerCase(),
      requestPayload: body === undefined ? null : sanitizePayload(body)
    }),
    (errorId) => {
      span.attribute("error.type", error._tag)
      span.attribute("error.id", errorId)
      return problemResponse(error, errorId)
    }
  )

/** What the executor interrupts a request's fiber with when its deadline passes, so that it can be told from a client leaving. */
export const deadlineFiberId = FiberId.runtime(-504, 0)

/**
 * The request deadline. The request's fiber is started by plain code, which interrupts it with
 * `deadlineFiberId` when the time is up; the fiber runs uninterruptibly but for `restore`, which
 * lets the work (and only the work) be interrupted, and the interruption is then the `Timeout` it
 * stands for. Work inside an uninterruptible region (a write's transaction) finishes first, and
 * the interruption lands at the next step that may be interrupted. No fiber is forked and none
 * joined: joining would diff the whole context back (about 25 µs a request).
 */
export const restoredDeadline = (millis: number, restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
<A, E, R>(work: Effect.Effect<A, E, R>): Effect.Effect<A, E | Timeout, R> =>
  Effect.catchAllCause(restore(work), (cause): Effect.Effect<never, E | Timeout> =>
    interruptedOnlyBy(cause, deadlineFiberId)
      ? Effect.fail(new Timeout({ afterMillis: millis }))
      : Effect.failCause(cause))

type Deadline = <A, E, R>(work: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Timeout, R>

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const

/** A path that exists with other methods is 405 with `Allow`, not 404: the client has the method wrong, not the path. */
const withAllowedMethods = (error: AppError, request: HttpServerRequest.HttpServerRequest, routeOf: RouteLookup): AppError => {
  // A route that matched and answered ROUTE_NOT_FOUND itself (`/problems/{unknown}`) keeps its 404.
  if (error._tag !== "NotFound" || error.code !== "ROUTE_NOT_FOUND" || routeOf(request.method, request.url) !== undefined) return error
  const allowed = METHODS.filter((method) => routeOf(method, request.url) !== undefined)
  return allowed.length === 0
    ? error
    : new MethodNotAllowed({ detail: `This path does not take ${request.method}; it takes ${allowed.join(", ")}.`, allowed })
}

/**
 * Caching (SPEC §4): a response that carries a secret (a new API key, an access token) is
 * `no-store`; every other response to a request with credentials (a bearer credential or the
 * console's cookie) is `private, no-store`.
 */
const NO_STORE = "no-store"
const PRIVATE_NO_STORE = "private, no-store"
const CONSOLE_COOKIE_PREFIX = `${CONSOLE_COOKIE}=`

const cacheControlOf = (request: HttpServerRequest.HttpServerRequest, carriesSecret: boolean): string | undefined =>
  carriesSecret
    ? NO_STORE
    : request.headers.authorization !== undefined || (request.headers.cookie ?? "").includes(CONSOLE_COOKIE_PREFIX)
    ? PRIVATE_NO_STORE
    : undefined

export interface BoundaryOptions {
  /** Every route the server answers, so that a method a path does not take is a 405 with `Allow`. */
  readonly routeOf: RouteLookup
}

/** What the boundary needs of the request beside the request itself. */
export interface Edge {
  readonly request: HttpServerRequest.HttpServerRequest
  readonly span: Tracer.Span
  /** The route's responses carry a secret (`CarriesSecret`): `Cache-Control: no-store`. */
  readonly carriesSecret: boolean
  readonly deadline: Deadline
  /** Filled by the body rules: the body's text, and its JSON when it parsed. */
  readonly body: RequestBody
}

export interface RequestBody {
  text: string | undefined
  json: unknown
}

/**
 * The boundary every request passes. The request deadline is the outermost policy: past it the
 * request's work is interrupted (not left running) and the client gets 504 `TIMEOUT`. Requests
 * without credentials are rate limited here by IP; authenticated ones by their key, in their
 * authentication. Either way the result comes back as `RateLimit-*` headers.
 */
export const problemBoundary = (options: BoundaryOptions) =>
  Effect.gen(function*() {
    const ledger = yield* ErrorLedger
    const limiter = yield* RateLimiter

    /**
     * What runs before the route, in this order: the anonymous rate limit, then the path and body
     * rules; each only where it applies, so a GET with credentials (the hot read) has no step here.
     */
    const preflight = (request: HttpServerRequest.HttpServerRequest, body: RequestBody): Effect.Effect<void, AppError> | undefined => {
      const badPath = semicolonInPath(request)
      const rules = badPath !== undefined
        ? Effect.fail(badPath)
        : HttpMethod.hasBody(request.method)
        ? guardBody(request, body)
        : undefined
      if (request.headers.authorization !== undefined || isHealthProbe(request.url)) return rules
      const limit = countAgainst(limiter, addressBucket(request))
      return rules === undefined ? limit : Effect.zipRight(limit, rules)
    }

    return <E, R>(edge: Edge, app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> => {
      const { request } = edge
      const requestId = requestIdOf(request)
      const inFlight: InFlightRequest = { requestId, userAgent: request.headers["user-agent"], rateLimit: undefined }
      track(request, inFlight)
      const checks = preflight(request, edge.body)
      return (checks === undefined ? app : Effect.zipRight(checks, app)).pipe(
        edge.deadline,
        // A client that left is not answered.
        Effect.catchAllCause((cause) =>
          isClientAbort(cause)
            ? Effect.failCause(cause)
            : renderFailure(ledger, withAllowedMethods(classify(cause), request, options.routeOf), request, requestId, edge.body.text, edge.span)
        ),
        Effect.map((response) => withEdgeHeaders(response, requestId, edge.span.traceId, inFlight.rateLimit, cacheControlOf(request, edge.carriesSecret)))
      ) as Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>
    }
  })

/** `X-Request-Id` and `X-Trace-Id` on every response, `RateLimit-*` on those that were counted, `Cache-Control` where it applies. */
const withEdgeHeaders = (
  response: HttpServerResponse.HttpServerResponse,
  requestId: string,
  traceId: string,
  limited: RateLimitHeaders | undefined,
  cacheControl: string | undefined
) => {
  const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId, [TRACE_ID_HEADER]: traceId }
  if (limited !== undefined) {
    headers["ratelimit-limit"] = String(limited.limit)
    headers["ratelimit-remaining"] = String(limited.remaining)
    headers["ratelimit-reset"] = String(limited.reset)
  }
  if (cacheControl !== undefined) headers["cache-control"] = cacheControl
  return HttpServerResponse.setHeaders(response, headers)
}
