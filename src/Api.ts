/**
 * The whole HTTP contract (SPEC §4) as one `HttpApi`: routes, payloads, successes and every error a
 * route can answer with. `/openapi.json` and `/docs` are generated from it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Context, Schema } from "effect"
import { CurrentOperator, CurrentPrincipal } from "./domain/Principal.js"
import { ErrorGroup, ErrorGroupList, ErrorList, ErrorRecord, ErrorStats, Fingerprint, ListErrorsParams, ListGroupsParams, ResolveError, StatsParams } from "./domain/ErrorRecord.js"
import { AccessToken, TokenRequest } from "./domain/Auth.js"
import { ConsoleSessionInfo, ConsoleSignIn, SignInHeaders } from "./domain/Console.js"
import { BreakerAction, BreakerStatus, Dependency, HealthReport, Rates } from "./domain/Health.js"
import { Uuid } from "./domain/Ids.js"
import { ApiError } from "./domain/Problem.js"
import { MemoryEntry, MemoryKey, MemoryList, PutMemory } from "./domain/Memory.js"
import { EventsHeaders, EventsParams, ListMessagesParams, Message, MessagePage, PostMessage } from "./domain/Message.js"
import { CreateSession, ListSessionsParams, Session, SessionId, SessionPage } from "./domain/Session.js"
import { CreatedKey, CreatedTenant, CreateKey, CreateTenant, KeyId, TenantId } from "./domain/Tenant.js"

/**
 * An endpoint whose success carries a secret (a new API key, an access token): its responses are
 * `Cache-Control: no-store` (SPEC §4); every other response to a request with credentials is
 * `private, no-store`.
 */
export class CarriesSecret extends Context.Tag("bulwark/CarriesSecret")<CarriesSecret, true>() {}

/**
 * Fields a schema does not declare are refused, each with its own pointer, rather than silently
 * dropped: an agent that misspells `content` hears about it. Used for every request body and for
 * the query of every route that takes query parameters (see the README).
 */
const refusingUnknownFields = <A, I, R>(schema: Schema.Schema<A, I, R>): Schema.Schema<A, I, R> =>
  schema.annotations({ parseOptions: { onExcessProperty: "error", errors: "all" } })

const bearer = HttpApiSecurity.bearer.pipe(
  HttpApiSecurity.annotate(OpenApi.Description, "An API key (`bk_...`) or an access token from POST /v1/auth/token.")
)

export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  failure: Schema.Union(ApiError.Unauthenticated, ApiError.RateLimited, ApiError.DbOperational, ApiError.CacheUnavailable),
  provides: CurrentPrincipal,
  security: { bearer }
}) {}

/** The console's session cookie (SPEC §12): HttpOnly, SameSite=Strict, expiring; its value is not the admin token. */
export const CONSOLE_COOKIE = "bulwark_console"

export const consoleSession = HttpApiSecurity.apiKey({ in: "cookie", key: CONSOLE_COOKIE }).pipe(
  HttpApiSecurity.annotate(
    OpenApi.Description,
    "The console's session cookie from POST /v1/console/session. A request that changes something (any method but GET and HEAD) with it must carry the server's own `Origin`, else 403 FORBIDDEN."
  )
)

export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()("AdminAuthentication", {
  failure: Schema.Union(
    ApiError.Unauthenticated,
    ApiError.Forbidden,
    ApiError.RateLimited,
    ApiError.DbOperational,
    ApiError.CacheUnavailable
  ),
  provides: CurrentOperator,
  // The last scheme's handler decides (HttpApi tries them in order and answers the last failure).
  security: {
    consoleSession,
    adminToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "The admin token (BULWARK_ADMIN_TOKEN), or an API key created with `admin`.")
    )
  }
}) {}

/** `/health` accepts the admin token for details; without it (or with a wrong one) it answers the status only. */
export class OptionalOperator extends HttpApiMiddleware.Tag<OptionalOperator>()("OptionalOperator", {
  optional: true,
  provides: CurrentOperator,
  security: { consoleSession, adminToken: HttpApiSecurity.bearer }
}) {}

const Status = Schema.Struct({ status: Schema.Literal("ok") })

export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true })
  .annotate(OpenApi.Description, "Liveness, readiness and health of the server and its dependencies.")
  .add(
    HttpApiEndpoint.get("live", "/health/live")
      .annotate(OpenApi.Summary, "Liveness probe")
      .addSuccess(Status)
      .annotate(OpenApi.Description, "The process is up. Touches no dependency.")
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
      .annotate(OpenApi.Summary, "Health, with details for operators")
      .addSuccess(HealthReport)
      .addError(ApiError.DbOperational)
      .middleware(OptionalOperator)
      .annotate(
        OpenApi.Description,
        "ok, degraded (the cache cannot serve) or unhealthy (503: the database cannot serve). With the admin token: each dependency's status, breaker and latency, and the error ledger's counts; the 503 problem body carries the same report in its `health` member."
      )
  )
  .add(
    HttpApiEndpoint.get("ready", "/health/ready")
      .annotate(OpenApi.Summary, "Readiness probe")
      .addSuccess(Status)
      .addError(ApiError.DbOperational)
      .addError(ApiError.CacheUnavailable)
      .annotate(OpenApi.Description, "The database can serve requests, and so can the cache when it is required (`BULWARK_CACHE_REQUIRED=true`).")
  )
{}

export const ProblemTypeDescription = Schema.Struct({
  type: Schema.String,
  code: Schema.String,
  title: Schema.String,
  status: Schema.Int,
  advice: Schema.String
}).annotations({ identifier: "ProblemType" })

export class ProblemsGroup extends HttpApiGroup.make("problems", { topLevel: true })
  .annotate(OpenApi.Description, "The problem types every error response names in `type`.")
  .add(
    HttpApiEndpoint.get("describe", "/problems/:slug")
      .annotate(OpenApi.Summary, "Describe a problem type")
      .setPath(Schema.Struct({ slug: Schema.String }))
      .addSuccess(ProblemTypeDescription)
      .addError(ApiError.NotFound)
      .annotate(OpenApi.Description, "Describes a problem type: what it means and what a client should do.")
  )
{}

const sessionPath = Schema.Struct({ id: SessionId })

/**
 * POSTs that write accept an `Idempotency-Key` (SPEC §4), except the two that answer with a new API
 * key: replaying them would mean storing the key in plain text, which is never done.
 */
export const IdempotencyHeaders = Schema.Struct({
  "idempotency-key": Schema.optional(
    Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255)).annotations({
      description: "Repeat the request with the same key and body within 24 h to get the first response back, with nothing written again."
    })
  )
})

export class AuthGroup extends HttpApiGroup.make("auth")
  .annotate(OpenApi.Description, "Access tokens for API keys.")
  .add(
    HttpApiEndpoint.post("token", "/token")
      .annotate(OpenApi.Summary, "Exchange an API key for an access token")
      .annotate(CarriesSecret, true)
      .setPayload(refusingUnknownFields(TokenRequest))
      .addSuccess(AccessToken)
      .addError(ApiError.Unauthenticated)
      .annotate(OpenApi.Description, "Exchanges an API key for a 15-minute access token.")
  )
  .add(
    HttpApiEndpoint.post("revoke", "/revoke")
      .annotate(OpenApi.Summary, "Revoke the key's access tokens")
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ApiError.Forbidden)
      .addError(ApiError.Overloaded)
      .middleware(Authentication)
      .annotate(OpenApi.Description, "With an API key: every access token issued for it so far is refused from the next request on.")
  )
  .addError(ApiError.DbOperational)
  .addError(ApiError.CacheUnavailable)
  .prefix("/v1/auth")
{}

export class OperationsGroup extends HttpApiGroup.make("operations", { topLevel: true })
  .annotate(OpenApi.Description, "Metrics for operators.")
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .annotate(OpenApi.Summary, "Prometheus metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" })))
      .annotate(OpenApi.Description, "Prometheus text exposition of the server's metrics.")
  )
  .addError(ApiError.DbOperational)
  .middleware(AdminAuthentication)
{}

export class SessionsGroup extends HttpApiGroup.make("sessions")
  .annotate(OpenApi.Description, "Sessions: the shared context agents work in.")
  .add(
    HttpApiEndpoint.post("create", "/")
      .annotate(OpenApi.Summary, "Create a session")
      .setPayload(refusingUnknownFields(CreateSession))
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Session, { status: 201 })
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.get("list", "/")
      .annotate(OpenApi.Summary, "List sessions")
      .setUrlParams(refusingUnknownFields(ListSessionsParams))
      .addSuccess(SessionPage)
  )
  .add(
    HttpApiEndpoint.get("get", "/:id")
      .annotate(OpenApi.Summary, "Read a session")
      .setPath(sessionPath)
      .addSuccess(Session)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.del("delete", "/:id")
      .annotate(OpenApi.Summary, "Delete a session with its messages and memory")
      .setPath(sessionPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ApiError.NotFound)
  )
  .addError(ApiError.DbOperational)
  .addError(ApiError.Overloaded)
  .addError(ApiError.CacheUnavailable)
  .middleware(Authentication)
  .prefix("/v1/sessions")
{}

const memoryPath = Schema.Struct({ id: SessionId, key: MemoryKey })

export class MessagesGroup extends HttpApiGroup.make("messages")
  .annotate(OpenApi.Description, "Messages of a session, and their live stream.")
  .add(
    HttpApiEndpoint.post("post", "/:id/messages")
      .annotate(OpenApi.Summary, "Post a message")
      .setPath(sessionPath)
      .setPayload(refusingUnknownFields(PostMessage))
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Message, { status: 201 })
      .addError(ApiError.Forbidden)
      .addError(ApiError.Conflict)
      .annotate(
        OpenApi.Description,
        "Appends a message as `agent_id` (the key must allow that agent, else 403). `seq` is 1, 2, 3, ... per session. Content over 64 KiB is 413."
      )
  )
  .add(
    HttpApiEndpoint.get("list", "/:id/messages")
      .annotate(OpenApi.Summary, "List messages in seq order")
      .setPath(sessionPath)
      .setUrlParams(refusingUnknownFields(ListMessagesParams))
      .addSuccess(MessagePage)
      .annotate(OpenApi.Description, "Messages in `seq` order after `after` (default 0); `next_after` pages on.")
  )
  .add(
    HttpApiEndpoint.get("events", "/:id/events")
      .annotate(OpenApi.Summary, "Stream new messages (server-sent events)")
      .setPath(sessionPath)
      .setHeaders(EventsHeaders)
      .setUrlParams(refusingUnknownFields(EventsParams))
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })))
      .annotate(
        OpenApi.Description,
        "Server-sent events: `event: message` with `id: <seq>` for each new message; resumes after `Last-Event-ID` (or `?after=`); `: ping` every 15 s. A failure mid-stream sends `event: error` with `data: {code, error_id, detail}` and ends the stream (deleting the session does this with SESSION_NOT_FOUND)."
      )
  )
  .addError(ApiError.NotFound)
  .addError(ApiError.DbOperational)
  .addError(ApiError.Overloaded)
  .addError(ApiError.CacheUnavailable)
  .middleware(Authentication)
  .prefix("/v1/sessions")
{}

export class MemoryGroup extends HttpApiGroup.make("memory")
  .annotate(OpenApi.Description, "A session's key/value memory.")
  .add(
    HttpApiEndpoint.put("put", "/:id/memory/:key")
      .annotate(OpenApi.Summary, "Set a memory key")
      .setPath(memoryPath)
      .setPayload(refusingUnknownFields(PutMemory))
      .addSuccess(MemoryEntry)
      .annotate(OpenApi.Description, "Sets the key to a JSON value (at most 64 KiB encoded), optionally expiring after `ttl_seconds`.")
  )
  .add(
    HttpApiEndpoint.get("get", "/:id/memory/:key")
      .annotate(OpenApi.Summary, "Read a memory key")
      .setPath(memoryPath)
      .addSuccess(MemoryEntry)
      .annotate(OpenApi.Description, "An expired key is 404 MEMORY_KEY_NOT_FOUND from the moment it expires.")
  )
  .add(
    HttpApiEndpoint.get("list", "/:id/memory")
      .annotate(OpenApi.Summary, "List a session's memory")
      .setPath(sessionPath)
      .addSuccess(MemoryList)
      .annotate(OpenApi.Description, "Every unexpired key of the session, by key.")
  )
  .add(
    HttpApiEndpoint.del("delete", "/:id/memory/:key")
      .annotate(OpenApi.Summary, "Delete a memory key")
      .setPath(memoryPath)
      .addSuccess(HttpApiSchema.NoContent)
  )
  .addError(ApiError.NotFound)
  .addError(ApiError.MemoryUnavailable)
  .addError(ApiError.Overloaded)
  .addError(ApiError.CacheUnavailable)
  .middleware(Authentication)
  .prefix("/v1/sessions")
{}

export class AdminGroup extends HttpApiGroup.make("admin")
  .annotate(OpenApi.Description, "Tenants, API keys, breakers and the error ledger, for operators.")
  .add(
    HttpApiEndpoint.post("createTenant", "/tenants")
      .annotate(OpenApi.Summary, "Create a tenant and its first API key")
      .annotate(CarriesSecret, true)
      .setPayload(refusingUnknownFields(CreateTenant))
      .annotate(OpenApi.Description, "Creates a tenant and its first API key, shown once. Takes no Idempotency-Key (its response holds a secret that is never stored).")
      .addSuccess(CreatedTenant, { status: 201 })
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.post("createKey", "/tenants/:id/keys")
      .annotate(OpenApi.Summary, "Create an API key for a tenant")
      .annotate(CarriesSecret, true)
      .setPath(Schema.Struct({ id: TenantId }))
      .setPayload(refusingUnknownFields(CreateKey))
      .addSuccess(CreatedKey, { status: 201 })
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.del("revokeKey", "/keys/:id")
      .annotate(OpenApi.Summary, "Revoke an API key")
      .setPath(Schema.Struct({ id: KeyId }))
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.get("breakers", "/breakers")
      .annotate(OpenApi.Summary, "List the circuit breakers")
      .addSuccess(Schema.Struct({ data: Schema.Array(BreakerStatus) }))
  )
  .add(
    HttpApiEndpoint.post("setBreaker", "/breakers/:dependency")
      .annotate(OpenApi.Summary, "Open, close or disable a breaker")
      .setPath(Schema.Struct({ dependency: Dependency }))
      .setPayload(refusingUnknownFields(BreakerAction))
      .addSuccess(BreakerStatus)
      .annotate(OpenApi.Description, "Force a breaker open, close (reset) it, or disable it.")
  )
  .add(
    HttpApiEndpoint.get("rates", "/rates")
      .annotate(OpenApi.Summary, "Request and error rates, last hour")
      .addSuccess(Rates)
      .annotate(OpenApi.Description, "Requests and error responses per minute over the last hour, as counted by this instance.")
  )
  .add(
    HttpApiEndpoint.get("listErrors", "/errors")
      .annotate(OpenApi.Summary, "List error records")
      .setUrlParams(refusingUnknownFields(ListErrorsParams))
      .addSuccess(ErrorList)
      .annotate(OpenApi.Description, "Error records, newest first, filtered.")
  )
  .add(
    HttpApiEndpoint.get("errorStats", "/errors/stats")
      .annotate(OpenApi.Summary, "Count error records")
      .setUrlParams(refusingUnknownFields(StatsParams))
      .addSuccess(ErrorStats)
  )
  .add(
    HttpApiEndpoint.get("errorGroups", "/errors/groups")
      .annotate(OpenApi.Summary, "List error groups")
      .setUrlParams(refusingUnknownFields(ListGroupsParams))
      .addSuccess(ErrorGroupList)
      .annotate(
        OpenApi.Description,
        "Errors grouped by fingerprint (code, route template and top stack frame), busiest first. The filters pick the rows counted; `resolved=false` keeps groups with an unresolved error, `resolved=true` those with none."
      )
  )
  .add(
    HttpApiEndpoint.post("resolveErrorGroup", "/errors/groups/:fingerprint/resolve")
      .annotate(OpenApi.Summary, "Resolve an error group")
      .setPath(Schema.Struct({ fingerprint: Fingerprint }))
      .setPayload(refusingUnknownFields(ResolveError))
      .addSuccess(ErrorGroup)
      .addError(ApiError.NotFound)
      .annotate(
        OpenApi.Description,
        "Resolves every error of the group recorded so far, with the notes; a later error of the same fingerprint reopens the group."
      )
  )
  .add(
    HttpApiEndpoint.get("getError", "/errors/:error_id")
      .annotate(OpenApi.Summary, "Read an error record")
      .setPath(Schema.Struct({ error_id: Uuid }))
      .addSuccess(ErrorRecord)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.post("resolveError", "/errors/:error_id/resolve")
      .annotate(OpenApi.Summary, "Resolve an error record")
      .setPath(Schema.Struct({ error_id: Uuid }))
      .setPayload(refusingUnknownFields(ResolveError))
      .setHeaders(IdempotencyHeaders)
      .addSuccess(ErrorRecord)
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
  )
  .addError(ApiError.DbOperational)
  .addError(ApiError.Overloaded)
  .addError(ApiError.CacheUnavailable)
  .middleware(AdminAuthentication)
  .prefix("/v1/admin")
{}

export class ConsoleGroup extends HttpApiGroup.make("console")
  .annotate(OpenApi.Description, "The operators' console: its sign-in session.")
  .add(
    HttpApiEndpoint.post("signIn", "/session")
      .annotate(OpenApi.Summary, "Sign in to the console")
      .annotate(CarriesSecret, true)
      .setPayload(refusingUnknownFields(ConsoleSignIn))
      .setHeaders(SignInHeaders)
      .addSuccess(ConsoleSessionInfo)
      .addError(ApiError.Unauthenticated)
      .addError(ApiError.Forbidden)
      .annotate(
        OpenApi.Description,
        "Exchanges the admin token for a console session: the answer sets an HttpOnly, SameSite=Strict cookie (Secure behind https) that expires after 8 hours and is not the token. Needs the server's own `Origin`. A wrong token is 401 AUTH_INVALID, ledgered and counted against the caller's address like any failed authentication."
      )
  )
  .add(
    HttpApiEndpoint.get("session", "/session")
      .annotate(OpenApi.Summary, "The console session")
      .addSuccess(ConsoleSessionInfo)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Description, "Who is signed in, until when, and the trace link template (BULWARK_TRACE_URL).")
  )
  .add(
    HttpApiEndpoint.del("signOut", "/session")
      .annotate(OpenApi.Summary, "Sign out of the console")
      .addSuccess(HttpApiSchema.NoContent)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Description, "Ends the console session on the server and clears its cookie.")
  )
  .addError(ApiError.DbOperational)
  .addError(ApiError.Overloaded)
  .addError(ApiError.CacheUnavailable)
  .prefix("/v1/console")
{}

/** `METHOD /path/:template` of every endpoint annotated `CarriesSecret`. */
export const secretRoutes = (): ReadonlySet<string> => {
  const routes = new Set<string>()
  HttpApi.reflect(Api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      if (Context.getOption(endpoint.annotations, CarriesSecret)._tag === "Some") routes.add(`${endpoint.method} ${endpoint.path}`)
    }
  })
  return routes
}

type Json = Record<string, any>

const header = (description: string, schema: Json, required = false): Json => ({ description, required, schema })

/** The response headers the edge sends (src/http/Boundary.ts, src/http/Problem.ts), documented once. */
const responseHeaders: Json = {
  XRequestId: header("The client's own `X-Request-Id` when it is a token of 1 to 128 characters of `A-Za-z0-9._:-`, else a generated UUID.", {
    type: "string",
    pattern: "^[A-Za-z0-9._:-]{1,128}$"
  }, true),
  XTraceId: header("The trace id of the request's server span (quote it with the error_id).", { type: "string", pattern: "^[0-9a-f]{32}$" }, true),
  RetryAfter: header("Seconds to wait before retrying; equals `retry_after_seconds` of the problem body.", { type: "string", pattern: "^[1-9][0-9]*$" }, true),
  WWWAuthenticate: header("`Bearer realm=\"bulwark\"`, with `error=\"invalid_token\"` when a credential was sent and refused.", {
    type: "string",
    pattern: "^Bearer "
  }, true),
  Allow: header("The methods this path takes.", { type: "string", pattern: "^[A-Z]+(, [A-Z]+)*$" }, true),
  RateLimitLimit: header("Requests allowed per window for this key (or this address, without credentials). Sent on responses that were counted.", {
    type: "string",
    pattern: "^[0-9]+$"
  }),
  RateLimitRemaining: header("Requests left in the current window.", { type: "string", pattern: "^[0-9]+$" }),
  RateLimitReset: header("Seconds until the window resets.", { type: "string", pattern: "^[0-9]+$" }),
  SetCookie: header("The console's session cookie: set by a sign-in (HttpOnly, SameSite=Strict, 8 hours), cleared by a sign-out.", {
    type: "string",
    pattern: `^${CONSOLE_COOKIE}=`
  }, true),
  CacheControl: header("`no-store` on responses that carry a secret; `private, no-store` on every other response to a request with credentials (`Authorization`, or the console's cookie).", {
    type: "string",
    enum: ["no-store", "private, no-store"]
  })
}

const ref = (name: string): Json => ({ $ref: `#/components/headers/${name}` })

/** The operations whose success sets or clears the console's cookie. */
const SETS_COOKIE = new Set(["console.signIn", "console.signOut"])

const isHealthProbe = (path: string) => path === "/health" || path.startsWith("/health/")

/** Which of the edge's headers a response of this status can carry. */
const headersOf = (path: string, status: number): Json => {
  const headers: Json = { "X-Request-Id": ref("XRequestId"), "X-Trace-Id": ref("XTraceId"), "Cache-Control": ref("CacheControl") }
  if (status === 429 || status === 503) headers["Retry-After"] = ref("RetryAfter")
  if (status === 401) headers["WWW-Authenticate"] = ref("WWWAuthenticate")
  if (status === 405) headers["Allow"] = ref("Allow")
  // Health probes are never counted; every other response that was counted carries them (SPEC §4).
  if (!isHealthProbe(path)) {
    headers["RateLimit-Limit"] = ref("RateLimitLimit")
    headers["RateLimit-Remaining"] = ref("RateLimitRemaining")
    headers["RateLimit-Reset"] = ref("RateLimitReset")
  }
  return headers
}

/** JSON Schema's `unknown` carries a fixed `$id`; the same `$id` twice makes a 2020-12 validator refuse the document. */
const withoutUnknownIds = (node: unknown): void => {
  if (Array.isArray(node)) return node.forEach(withoutUnknownIds)
  if (node === null || typeof node !== "object") return
  const object = node as Json
  if (object.$id === "/schemas/unknown") {
    delete object.$id
    delete object.title
  }
  Object.values(object).forEach(withoutUnknownIds)
}

/**
 * Makes the generated document say what the server does (SPEC §2, §4):
 * - every error response is the one problem body: HttpApi documents each status from the declared
 *   schemas, and unifies several at one status (and its own decode error at 400) as plain JSON;
 * - the edge's response headers are documented on every response that can carry them;
 * - `/health` answers without credentials (the admin token only adds details);
 * - the `servers` entry, and no duplicate `$id`.
 */
const documentTruthfully = (spec: Json): Json => {
  spec.servers = [{ url: "/", description: "The server that serves this document." }]
  spec.components.headers = responseHeaders
  for (const [path, operations] of Object.entries(spec.paths as Json)) {
    for (const operation of Object.values(operations as Json)) {
      // The credentials only add details: anonymous callers get the status (`{}` = none needed).
      if (operation.operationId === "health") operation.security = [{}, ...(operation.security ?? [])]
      for (const [status, response] of Object.entries(operation.responses as Json)) {
        if (Number(status) >= 400) {
          response.content = { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } }
          if (Number(status) === 400) response.description = "ValidationFailed: VALIDATION_FAILED"
        }
        response.headers = headersOf(path, Number(status))
        if (SETS_COOKIE.has(operation.operationId) && Number(status) < 300) response.headers["Set-Cookie"] = ref("SetCookie")
      }
    }
  }
  // HttpApi's own decode error (and what only it uses) is never sent: its failures are rendered as problems.
  for (const unused of ["HttpApiDecodeError", "Issue", "PropertyKey"]) delete spec.components.schemas[unused]
  withoutUnknownIds(spec)
  return spec
}

/** Errors any route can answer with: malformed input, and a defect on our side. */
export class Api extends HttpApi.make("bulwark")
  .add(HealthGroup)
  .add(ProblemsGroup)
  .add(AuthGroup)
  .add(OperationsGroup)
  .add(SessionsGroup)
  .add(MessagesGroup)
  .add(MemoryGroup)
  .add(AdminGroup)
  .add(ConsoleGroup)
  .addError(ApiError.ValidationFailed)
  .addError(ApiError.MethodNotAllowed)
  .addError(ApiError.PayloadTooLarge)
  .addError(ApiError.UnsupportedMediaType)
  .addError(ApiError.RateLimited)
  .addError(ApiError.Internal)
  .addError(ApiError.Timeout)
  .annotate(OpenApi.Title, "Bulwark")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(OpenApi.Description, "Shared context for AI agents. Every error is an RFC 9457 problem with an error_id.")
  .annotate(OpenApi.Transform, documentTruthfully)
{}
