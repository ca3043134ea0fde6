/**
 * The whole HTTP contract (SPEC §4) as one `HttpApi`: routes, payloads, successes and every error a
 * route can answer with. `/openapi.json` and `/docs` are generated from it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { CurrentOperator, CurrentPrincipal } from "./domain/Principal.js"
import { ErrorList, ErrorRecord, ErrorStats, ListErrorsParams, ResolveError, StatsParams } from "./domain/ErrorRecord.js"
import { AccessToken, TokenRequest } from "./domain/Auth.js"
import { BreakerAction, BreakerStatus, Dependency, HealthReport } from "./domain/Health.js"
import { Uuid } from "./domain/Ids.js"
import { ApiError } from "./domain/Problem.js"
import { MemoryEntry, MemoryKey, MemoryList, PutMemory } from "./domain/Memory.js"
import { EventsHeaders, EventsParams, ListMessagesParams, Message, MessagePage, PostMessage } from "./domain/Message.js"
import { CreateSession, ListSessionsParams, Session, SessionId, SessionPage } from "./domain/Session.js"
import { CreatedKey, CreatedTenant, CreateKey, CreateTenant, KeyId, TenantId } from "./domain/Tenant.js"

const bearer = HttpApiSecurity.bearer.pipe(
  HttpApiSecurity.annotate(OpenApi.Description, "An API key (`bk_...`) or an access token from POST /v1/auth/token.")
)

export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  failure: Schema.Union(ApiError.Unauthenticated, ApiError.RateLimited, ApiError.DbOperational, ApiError.CacheUnavailable),
  provides: CurrentPrincipal,
  security: { bearer }
}) {}

export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()("AdminAuthentication", {
  failure: Schema.Union(
    ApiError.Unauthenticated,
    ApiError.Forbidden,
    ApiError.RateLimited,
    ApiError.DbOperational,
    ApiError.CacheUnavailable
  ),
  provides: CurrentOperator,
  security: {
    adminToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "The admin token (BULWARK_ADMIN_TOKEN), or an API key created with `admin`.")
    )
  }
}) {}

/** `/health` accepts the admin token for details; without it (or with a wrong one) it answers the status only. */
export class OptionalOperator extends HttpApiMiddleware.Tag<OptionalOperator>()("OptionalOperator", {
  optional: true,
  provides: CurrentOperator,
  security: { adminToken: HttpApiSecurity.bearer }
}) {}

const Status = Schema.Struct({ status: Schema.Literal("ok") })

export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true })
  .add(
    HttpApiEndpoint.get("live", "/health/live")
      .addSuccess(Status)
      .annotate(OpenApi.Description, "The process is up. Touches no dependency.")
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
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
  .add(
    HttpApiEndpoint.get("describe", "/problems/:slug")
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
  .add(
    HttpApiEndpoint.post("token", "/token")
      .setPayload(TokenRequest)
      .addSuccess(AccessToken)
      .addError(ApiError.Unauthenticated)
      .annotate(OpenApi.Description, "Exchanges an API key for a 15-minute access token.")
  )
  .add(
    HttpApiEndpoint.post("revoke", "/revoke")
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
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" })))
      .annotate(OpenApi.Description, "Prometheus text exposition of the server's metrics.")
  )
  .addError(ApiError.DbOperational)
  .middleware(AdminAuthentication)
{}

export class SessionsGroup extends HttpApiGroup.make("sessions")
  .add(
    HttpApiEndpoint.post("create", "/")
      .setPayload(CreateSession)
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Session, { status: 201 })
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.get("list", "/")
      .setUrlParams(ListSessionsParams)
      .addSuccess(SessionPage)
  )
  .add(
    HttpApiEndpoint.get("get", "/:id")
      .setPath(sessionPath)
      .addSuccess(Session)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.del("delete", "/:id")
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
  .add(
    HttpApiEndpoint.post("post", "/:id/messages")
      .setPath(sessionPath)
      .setPayload(PostMessage)
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
      .setPath(sessionPath)
      .setUrlParams(ListMessagesParams)
      .addSuccess(MessagePage)
      .annotate(OpenApi.Description, "Messages in `seq` order after `after` (default 0); `next_after` pages on.")
  )
  .add(
    HttpApiEndpoint.get("events", "/:id/events")
      .setPath(sessionPath)
      .setHeaders(EventsHeaders)
      .setUrlParams(EventsParams)
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
  .add(
    HttpApiEndpoint.put("put", "/:id/memory/:key")
      .setPath(memoryPath)
      .setPayload(PutMemory)
      .addSuccess(MemoryEntry)
      .annotate(OpenApi.Description, "Sets the key to a JSON value (at most 64 KiB encoded), optionally expiring after `ttl_seconds`.")
  )
  .add(
    HttpApiEndpoint.get("get", "/:id/memory/:key")
      .setPath(memoryPath)
      .addSuccess(MemoryEntry)
      .annotate(OpenApi.Description, "An expired key is 404 MEMORY_KEY_NOT_FOUND from the moment it expires.")
  )
  .add(
    HttpApiEndpoint.get("list", "/:id/memory")
      .setPath(sessionPath)
      .addSuccess(MemoryList)
      .annotate(OpenApi.Description, "Every unexpired key of the session, by key.")
  )
  .add(
    HttpApiEndpoint.del("delete", "/:id/memory/:key")
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
  .add(
    HttpApiEndpoint.post("createTenant", "/tenants")
      .setPayload(CreateTenant)
      .annotate(OpenApi.Description, "Creates a tenant and its first API key, shown once. Takes no Idempotency-Key (its response holds a secret that is never stored).")
      .addSuccess(CreatedTenant, { status: 201 })
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.post("createKey", "/tenants/:id/keys")
      .setPath(Schema.Struct({ id: TenantId }))
      .setPayload(CreateKey)
      .addSuccess(CreatedKey, { status: 201 })
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.del("revokeKey", "/keys/:id")
      .setPath(Schema.Struct({ id: KeyId }))
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.get("breakers", "/breakers")
      .addSuccess(Schema.Struct({ data: Schema.Array(BreakerStatus) }))
  )
  .add(
    HttpApiEndpoint.post("setBreaker", "/breakers/:dependency")
      .setPath(Schema.Struct({ dependency: Dependency }))
      .setPayload(BreakerAction)
      .addSuccess(BreakerStatus)
      .annotate(OpenApi.Description, "Force a breaker open, close (reset) it, or disable it.")
  )
  .add(
    HttpApiEndpoint.get("listErrors", "/errors")
      .setUrlParams(ListErrorsParams)
      .addSuccess(ErrorList)
      .annotate(OpenApi.Description, "Error records, newest first, filtered.")
  )
  .add(
    HttpApiEndpoint.get("errorStats", "/errors/stats")
      .setUrlParams(StatsParams)
      .addSuccess(ErrorStats)
  )
  .add(
    HttpApiEndpoint.get("getError", "/errors/:error_id")
      .setPath(Schema.Struct({ error_id: Uuid }))
      .addSuccess(ErrorRecord)
      .addError(ApiError.NotFound)
  )
  .add(
    HttpApiEndpoint.post("resolveError", "/errors/:error_id/resolve")
      .setPath(Schema.Struct({ error_id: Uuid }))
      .setPayload(ResolveError)
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

type OpenApiDocument = {
  readonly paths: Record<string, Record<string, { responses: Record<string, { description: string; content?: unknown }> }>>
}

/**
 * Every error response is the one problem body. HttpApi documents each status from the declared
 * schemas, and unifies several at one status (and its own decode error at 400) as plain JSON; this
 * rewrites them all to `application/problem+json` with the `Problem` schema.
 */
const documentProblems = (spec: Record<string, any>): Record<string, any> => {
  for (const operations of Object.values((spec as OpenApiDocument).paths)) {
    for (const operation of Object.values(operations)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue
        response.content = { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } }
        if (Number(status) === 400) response.description = "ValidationFailed: VALIDATION_FAILED"
      }
    }
  }
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
  .addError(ApiError.ValidationFailed)
  .addError(ApiError.PayloadTooLarge)
  .addError(ApiError.UnsupportedMediaType)
  .addError(ApiError.RateLimited)
  .addError(ApiError.Internal)
  .addError(ApiError.Timeout)
  .annotate(OpenApi.Title, "Bulwark")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(OpenApi.Description, "Shared context for AI agents. Every error is an RFC 9457 problem with an error_id.")
  .annotate(OpenApi.Transform, documentProblems)
{}
