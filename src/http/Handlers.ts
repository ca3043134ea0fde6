/**
 * Handlers: each maps the decoded input and the caller to one service call. Nothing here reads
 * the raw request; that stays in the boundary and the auth middleware.
 */
import { HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { CONSOLE_SESSION_SECONDS, ConsoleSessions } from "../../services/ConsoleSessions.js"
import { ConsoleSessionInfo, ConsoleSettings } from "../domain/Console.js"
import { isOwnOrigin } from "./Origin.js"
import { Auth } from "../../services/Auth.js"
import { ErrorRecords } from "../../services/ErrorLedger.js"
import { Health } from "../../services/Health.js"
import { Idempotency } from "../../services/Idempotency.js"
import { Events, type StreamRequest, type StreamSink } from "../../services/Events.js"
import { Memory } from "../../services/Memory.js"
import { Messages } from "../../services/Messages.js"
import { Sessions } from "../../services/Sessions.js"
import { Tenants } from "../../services/Tenants.js"
import { Api, CONSOLE_COOKIE } from "../Api.js"
import { ErrorRecord } from "../domain/ErrorRecord.js"
import { HealthReport } from "../domain/Health.js"
import { CurrentOperator, CurrentPrincipal, type Operator } from "../domain/Principal.js"
import { prometheusText } from "../telemetry/Prometheus.js"
import { RequestRates } from "../telemetry/Rates.js"
import { currentRequest } from "./InFlight.js"
import { group } from "./Executor.js"
import { eventStreamResponse } from "./Sse.js"
import { codeOfSlug, DbOperational, Forbidden, NotFound, problemTypes, slugOf, statusOfCode } from "../errors.js"

const ok = { status: "ok" } as const

export const HealthLive = group(Api, "health", (handlers) =>
  Effect.gen(function*() {
    const health = yield* Health
    return handlers
      .handle("live", () => Effect.succeed(ok))
      .handle("health", () =>
        Effect.gen(function*() {
          const operator = yield* Effect.serviceOption(CurrentOperator)
          const report = yield* health.report(Option.isSome(operator))
          if (report.status !== "unhealthy") return report
          return yield* new DbOperational({
            operation: "health",
            reason: "unhealthy",
            transient: true,
            retryAfterSeconds: 1,
            cause: null,
            // One member, so the report's `status` and `errors` do not collide with the problem's own.
            extensions: { health: Schema.encodeSync(HealthReport)(report) }
          })
        }))
      .handle("ready", () => Effect.as(health.ready(), ok))
  }))

export const ProblemsLive = group(Api, "problems", (handlers) =>
  handlers.handle("describe", ({ path }) => {
    const code = codeOfSlug(path.slug)
    if (code === undefined) {
      return Effect.fail(new NotFound({ code: "ROUTE_NOT_FOUND", detail: `No problem type ${path.slug} exists.` }))
    }
    return Effect.succeed({
      type: `/problems/${slugOf(code)}`,
      code,
      status: statusOfCode(code),
      ...problemTypes[code]
    })
  }))

export const AuthLive = group(Api, "auth", (handlers) =>
  Effect.gen(function*() {
    const auth = yield* Auth
    return handlers
      .handle("token", ({ payload }) => auth.exchange(payload.api_key))
      .handle("revoke", () => Effect.flatMap(CurrentPrincipal, auth.revokeTokens))
  }))

export const OperationsLive = group(Api, "operations", (handlers) => handlers.handle("metrics", () => prometheusText))

export const SessionsLive = group(Api, "sessions", (handlers) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    return handlers
      .handle("create", ({ headers, payload }) =>
        Effect.flatMap(CurrentPrincipal, (caller) => sessions.createOnce(caller.tenantId, payload, headers["idempotency-key"])))
      .handle("list", ({ urlParams }) => Effect.flatMap(CurrentPrincipal, (caller) => sessions.list(caller.tenantId, urlParams)))
      .handle("get", ({ path }) => Effect.flatMap(CurrentPrincipal, (caller) => sessions.get(caller.tenantId, path.id)))
      .handle("delete", ({ path }) => Effect.flatMap(CurrentPrincipal, (caller) => sessions.remove(caller.tenantId, path.id)))
  }))

/** Built outside the handler, so an open stream holds these values and not the handler's whole scope. */
const opener = (events: Events, tenantId: string, sessionId: string, after: number, request: StreamRequest) => (sink: StreamSink) =>
  events.open(tenantId, sessionId, after, request, sink)

export const MessagesLive = group(Api, "messages", (handlers) =>
  Effect.gen(function*() {
    const messages = yield* Messages
    const events = yield* Events
    return handlers
      .handle("post", ({ headers, path, payload }) =>
        Effect.flatMap(CurrentPrincipal, (caller) => messages.postOnce(caller, path.id, payload, headers["idempotency-key"])))
      .handle("list", ({ path, urlParams }) =>
        Effect.flatMap(CurrentPrincipal, (caller) => messages.list(caller.tenantId, path.id, urlParams)))
      .handle("events", ({ headers, path, urlParams }) =>
        Effect.gen(function*() {
          const caller = yield* CurrentPrincipal
          // Past the caps refused before any other work; the slot is the stream's once it answers.
          const slot = yield* events.admit(caller.keyId)
          return yield* Effect.onError(
            Effect.gen(function*() {
              // Checked before the response starts, so a missing session is a plain 404.
              const newest = yield* events.newestSeq(caller.tenantId, path.id)
              const after = headers["last-event-id"] ?? urlParams.after ?? newest
              // The stream outlives this handler: what its ledger rows need of the request is taken now.
              const span = yield* Effect.option(Effect.currentSpan)
              const inFlight = yield* currentRequest
              const request = {
                requestId: inFlight?.requestId,
                userAgent: inFlight?.userAgent,
                traceId: Option.getOrUndefined(Option.map(span, (s) => s.traceId))
              }
              return yield* eventStreamResponse(opener(events, caller.tenantId, path.id, after, request), slot)
            }),
            () => Effect.sync(slot.release)
          )
        }))
  }))

export const MemoryLive = group(Api, "memory", (handlers) =>
  Effect.gen(function*() {
    const memory = yield* Memory
    return handlers
      .handle("put", ({ path, payload }) => Effect.flatMap(CurrentPrincipal, (caller) => memory.put(caller.tenantId, path.id, path.key, payload)))
      .handle("get", ({ path }) => Effect.flatMap(CurrentPrincipal, (caller) => memory.get(caller.tenantId, path.id, path.key)))
      .handle("list", ({ path }) => Effect.flatMap(CurrentPrincipal, (caller) => memory.list(caller.tenantId, path.id)))
      .handle("delete", ({ path }) => Effect.flatMap(CurrentPrincipal, (caller) => memory.remove(caller.tenantId, path.id, path.key)))
  }))

export const AdminLive = group(Api, "admin", (handlers) =>
  Effect.gen(function*() {
    const tenants = yield* Tenants
    const errors = yield* ErrorRecords
    const health = yield* Health
    const idempotency = yield* Idempotency
    const rates = yield* RequestRates
    /** Operators share one idempotency scope, whichever credential they use. */
    const once = <A, I, E, R>(key: string | undefined, operation: string, body: unknown, result: Schema.Schema<A, I>, write: Effect.Effect<A, E, R>) =>
      idempotency.run({ scope: "admin", key, operation, body, result, write })
    return handlers
      .handle("createTenant", ({ payload }) => tenants.createTenant(payload.name))
      .handle("createKey", ({ path, payload }) =>
        tenants.createKey(path.id, { name: payload.name, allowedAgents: payload.allowed_agents, admin: payload.admin }))
      .handle("revokeKey", ({ path }) => tenants.revokeKey(path.id))
      .handle("rates", () => Effect.map(rates.lastHour, (data) => ({ data })))
      .handle("breakers", () => Effect.map(health.breakerStatuses, (data) => ({ data })))
      .handle("setBreaker", ({ path, payload }) => health.setBreaker(path.dependency, payload.action))
      .handle("listErrors", ({ urlParams }) => Effect.map(errors.list(urlParams), (data) => ({ data })))
      .handle("errorStats", ({ urlParams }) => errors.stats(urlParams.since))
      .handle("errorGroups", ({ urlParams }) => Effect.map(errors.groups(urlParams), (data) => ({ data })))
      .handle("resolveErrorGroup", ({ path, payload }) => errors.resolveGroup(path.fingerprint, payload.notes))
      .handle("getError", ({ path }) => errors.get(path.error_id))
      .handle("resolveError", ({ headers, path, payload }) =>
        once(headers["idempotency-key"], "admin.resolveError", { error_id: path.error_id, ...payload }, ErrorRecord, errors.resolve(path.error_id, payload.notes)))
  }))

const consoleCookie = (value: string, maxAgeSeconds: number, secure: boolean) =>
  HttpServerResponse.unsafeSetCookie(CONSOLE_COOKIE, value, { httpOnly: true, sameSite: "strict", path: "/", maxAge: Duration.seconds(maxAgeSeconds), secure })

export const ConsoleLive = group(Api, "console", (handlers) =>
  Effect.gen(function*() {
    const sessions = yield* ConsoleSessions
    const settings = yield* ConsoleSettings
    const info = (operator: Operator) =>
      new ConsoleSessionInfo({
        signed_in_with: operator._tag === "ConsoleSession" ? "console_session" : operator._tag === "AdminKey" ? "admin_key" : "admin_token",
        expires_at: operator._tag === "ConsoleSession" ? operator.expiresAt : null,
        trace_url: settings.traceUrl
      })
    return handlers
      .handle("signIn", ({ headers, payload }) =>
        Effect.gen(function*() {
          if (!isOwnOrigin(headers.origin, headers.host)) {
            return yield* new Forbidden({ detail: "Sign in from the console page of this server (its own Origin)." })
          }
          const session = yield* sessions.signIn(payload.admin_token)
          const body = Schema.encodeSync(ConsoleSessionInfo)(info({ _tag: "ConsoleSession", ...session }))
          return HttpServerResponse.unsafeJson(body).pipe(
            consoleCookie(Redacted.value(session.id), CONSOLE_SESSION_SECONDS, headers["x-forwarded-proto"] === "https")
          )
        }))
      .handle("session", () => Effect.map(CurrentOperator, info))
      .handle("signOut", () =>
        Effect.gen(function*() {
          const operator = yield* CurrentOperator
          if (operator._tag === "ConsoleSession") yield* sessions.signOut(operator.id)
          return HttpServerResponse.empty({ status: 204 }).pipe(consoleCookie("", 0, false))
        }))
  }))

export const HandlersLive = Layer.mergeAll(HealthLive, ProblemsLive, AuthLive, OperationsLive, SessionsLive, MessagesLive, MemoryLive, AdminLive, ConsoleLive)
