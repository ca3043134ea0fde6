/**
 * The edge every request passes: request id in and out, the body rules (JSON only, at most 1 MiB,
 * parsable), and the problem rendering of every failure below it, including unknown routes and
 * defects. It is installed as the API-level middleware, so it sees failures before HttpApi's own
 * encoder would turn them into framework-shaped bodies.
 */
import { HttpApiBuilder, HttpMethod, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { Cause, Effect, Exit, FiberId, HashSet, Option, type Tracer } from "effect"
import { TENANT_ATTRIBUTE } from "../../services/Auth.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { RateLimiter } from "../../services/RateLimiter.js"
import { CONSOLE_COOKIE, secretRoutes } from "../Api.js"
import { type AppError, FieldIssue, MethodNotAllowed, PayloadTooLarge, Timeout, UnsupportedMediaType, ValidationFailed } from "../errors.js"
import { sanitizePayload } from "../telemetry/Sanitize.js"
import { interruptedOnlyBy, isClientAbort, type RouteLookup } from "../telemetry/ServerSpan.js"
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
 * Checks the body before any route sees it, and returns its text for the ledger. The text read
 * here is cached by the request, so the route's own decoding does not read the socket again.
 */
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

const guardBody = (request: HttpServerRequest.HttpServerRequest, read: { body: string | undefined }): Effect.Effect<void, AppError> =>
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
    const text = yield* request.text.pipe(
      Effect.mapError(() =>
        new ValidationFailed({
          detail: "The request body could not be read.",
          errors: [new FieldIssue({ pointer: "", detail: "must be a complete JSON document" })]
        })
      )
    )
    if (Buffer.byteLength(text) > MAX_BODY_BYTES) return yield* tooLarge
    read.body = text
    try {
      JSON.parse(text)
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

const stringAttribute = (span: Option.Option<Tracer.Span>, name: string): string | undefined => {
  const value = Option.isSome(span) ? span.value.attributes.get(name) : undefined
  return typeof value === "string" ? value : undefined
}

/**
 * Records a failure (ledger row, log line, metric, span attributes) under one fresh `error_id`
 * and renders it. What the request was is read from the request and from the server span, on
 * which the router has set `http.route` and the auth middleware the tenant.
 */
const renderFailure = (
  ledger: ErrorLedger,
  error: AppError,
  request: HttpServerRequest.HttpServerRequest,
  requestId: string,
  body: string | undefined
) =>
  Effect.gen(function*() {
    const span = yield* Effect.option(Effect.currentSpan)
    const errorId = yield* ledger.record(error, {
      requestId,
      traceId: Option.isSome(span) ? span.value.traceId : undefined,
      method: request.method,
      route: stringAttribute(span, "http.route"),
      userAgent: request.headers["user-agent"],
      tenantId: stringAttribute(span, TENANT_ATTRIBUTE),
      sessionId: SESSION_PATH.exec(request.url)?.[1]?.toLowerCase(),
      requestPayload: body === undefined ? null : sanitizePayload(body)
    })
    if (Option.isSome(span)) {
      span.value.attribute("error.type", error._tag)
      span.value.attribute("error.id", errorId)
    }
    return problemResponse(error, errorId)
  })

/**
 * The request deadline: past it the work is interrupted, and once it has stopped the request fails
 * with `Timeout`. Work that finishes anyway (it was inside an uninterruptible write) keeps its own
 * result, so a committed write is not reported as timed out. `Effect.timeoutFail` would race two
 * forked fibers and join the winner's fiber references back, which diffs the whole context (about
 * 25 µs a request); here one forked fiber is awaited, not joined, under one timer (about 6 µs).
 * Not joining means fiber references the work sets stay with it: the edge's own per-request state
 * is a mutable value set before the fork, and no route sets a pre-response handler. The timer is
 * the wall clock's, not Effect's `Clock`: the deadline is the client's, and is tested in real time.
 */
type Deadline = <A, E, R>(work: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Timeout, R>

/**
 * The work was interrupted, and not by the deadline: by the request's own interruption (a client
 * that left), which reaches the work at once, while the request itself may not be interruptible
 * yet. The request's interruptors say who it was, so a client abort stays a client abort (499,
 * nothing ledgered) instead of an anonymous interruption rendered as a 500.
 */
const asRequestInterruption = <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<A, E> =>
  Effect.descriptorWith((request) =>
    HashSet.size(request.interruptors) === 0
      ? exit
      : Effect.failCause(HashSet.reduce(request.interruptors, Cause.empty as Cause.Cause<E>, (cause, id) => Cause.parallel(cause, Cause.interrupt(id))))
  )

const withDeadline = (millis: number): Deadline => <A, E, R>(work: Effect.Effect<A, E, R>): Effect.Effect<A, E | Timeout, R> =>
  Effect.flatMap(Effect.fork(work), (fiber) =>
    Effect.async<A, E | Timeout>((resume) => {
      let late = false
      const timer = setTimeout(() => {
        late = true
        fiber.unsafeInterruptAsFork(fiber.id())
      }, millis)
      fiber.addObserver((exit) => {
        clearTimeout(timer)
        resume(
          late && Exit.isInterrupted(exit)
            ? Effect.fail(new Timeout({ afterMillis: millis }))
            : Exit.isInterrupted(exit) ? asRequestInterruption(exit) : exit
        )
      })
      // The request itself is interrupted (the client went away): its work goes too, and is waited for.
      return Effect.suspend(() => {
        clearTimeout(timer)
        return fiber.interruptAsFork(fiber.id()).pipe(Effect.zipRight(fiber.await), Effect.asVoid)
      })
    }))

/** What a hot route's own deadline interrupts its fiber with, so that it can be told from a client leaving. */
export const deadlineFiberId = FiberId.runtime(-504, 0)

/**
 * The deadline of a route whose fiber is started by plain code (the hot routes), without the fork
 * `withDeadline` needs: that code interrupts the fiber itself with `deadlineFiberId` when the time
 * is up, and runs the whole request uninterruptibly but for `restore`, which lets the work (and
 * only the work) be interrupted. The interruption is then the `Timeout` it stands for. The hot
 * routes are reads: no committed write can be mistaken for a timeout here.
 */
export const restoredDeadline = (millis: number, restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
<A, E, R>(work: Effect.Effect<A, E, R>): Effect.Effect<A, E | Timeout, R> =>
  Effect.catchAllCause(restore(work), (cause): Effect.Effect<never, E | Timeout> =>
    interruptedOnlyBy(cause, deadlineFiberId)
      ? Effect.fail(new Timeout({ afterMillis: millis }))
      : Effect.failCause(cause))

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

export interface BoundaryOptions {
  readonly requestTimeoutMillis: number
  readonly routeOf: RouteLookup
}

/**
 * The boundary as API middleware. The request deadline is the outermost policy: past it the
 * request's work is interrupted (not left running) and the client gets 504 `TIMEOUT`. Requests
 * without credentials are rate limited here by IP; authenticated ones by their key, in the auth
 * middleware. Either way the result comes back as `RateLimit-*` headers.
 */
export const problemBoundary = (options: BoundaryOptions) =>
  Effect.gen(function*() {
    const secret = secretRoutes()
    const cacheControlOf = (request: HttpServerRequest.HttpServerRequest): string | undefined =>
      request.method === "POST" && secret.has(`POST ${options.routeOf("POST", request.url)}`)
        ? NO_STORE
        : request.headers.authorization !== undefined || (request.headers.cookie ?? "").includes(CONSOLE_COOKIE_PREFIX)
        ? PRIVATE_NO_STORE
        : undefined
    const ledger = yield* ErrorLedger
    const limiter = yield* RateLimiter
    const forkedDeadline: Deadline = withDeadline(options.requestTimeoutMillis)
    const around = <E>(app: HttpApp.Default<E>, deadline: Deadline = forkedDeadline): HttpApp.Default =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const requestId = requestIdOf(request)
        const read: { body: string | undefined } = { body: undefined }
        const inFlight: InFlightRequest = { requestId, userAgent: request.headers["user-agent"], rateLimit: undefined }
        track(request, inFlight)
        const checks = preflight(request, read)
        return (checks === undefined ? app : Effect.zipRight(checks, app)).pipe(
          deadline,
          // A client that left is not answered (only a hot route's uninterruptible fiber gets here with one).
          Effect.catchAllCause((cause) =>
            isClientAbort(cause)
              ? Effect.failCause(cause)
              : renderFailure(ledger, withAllowedMethods(classify(cause), request, options.routeOf), request, requestId, read.body)
          ),
          Effect.map((response) => withEdgeHeaders(response, requestId, inFlight.rateLimit, cacheControlOf(request)))
        )
      })

    /**
     * What runs before the route, in this order: the anonymous rate limit, then the path and body
     * rules; each only where it applies, so a GET with credentials (the hot read) has no step here.
     */
    const preflight = (
      request: HttpServerRequest.HttpServerRequest,
      read: { body: string | undefined }
    ): Effect.Effect<void, AppError> | undefined => {
      const badPath = semicolonInPath(request)
      const rules = badPath !== undefined
        ? Effect.fail(badPath)
        : HttpMethod.hasBody(request.method)
        ? guardBody(request, read)
        : undefined
      if (request.headers.authorization !== undefined || isHealthProbe(request.url)) return rules
      const limit = countAgainst(limiter, addressBucket(request))
      return rules === undefined ? limit : Effect.zipRight(limit, rules)
    }

    return around
  })

/** `X-Request-Id` on every response, `RateLimit-*` on those that were counted, `Cache-Control` where it applies. */
const withEdgeHeaders = (
  response: HttpServerResponse.HttpServerResponse,
  requestId: string,
  limited: RateLimitHeaders | undefined,
  cacheControl: string | undefined
) => {
  const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId }
  if (limited !== undefined) {
    headers["ratelimit-limit"] = String(limited.limit)
    headers["ratelimit-remaining"] = String(limited.remaining)
    headers["ratelimit-reset"] = String(limited.reset)
  }
  if (cacheControl !== undefined) headers["cache-control"] = cacheControl
  return HttpServerResponse.setHeaders(response, headers)
}

export const layer = (options: BoundaryOptions) => HttpApiBuilder.middleware(problemBoundary(options))
