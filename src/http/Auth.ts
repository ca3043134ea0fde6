/**
 * Bearer authentication for `/v1/*` and `/v1/admin/*`. The header is read here, at the edge, so
 * the 401 codes can tell "no credential" (`AUTH_MISSING`: absent, empty, or not `Bearer`) from
 * "a bad one" (`AUTH_INVALID`); what a credential is worth is decided by the `Auth` service.
 */
import { HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Redacted } from "effect"
import { Auth } from "../../services/Auth.js"
import { ConsoleSessions } from "../../services/ConsoleSessions.js"
import { RateLimiter } from "../../services/RateLimiter.js"
import type { Operator, Principal } from "../domain/Principal.js"
import { AdminAuthentication, Authentication, CONSOLE_COOKIE, OptionalOperator } from "../Api.js"
import { Forbidden, Unauthenticated } from "../errors.js"
import { isOwnOrigin, isSafeMethod } from "./Origin.js"
import { countAgainst } from "./RateLimit.js"

const BEARER = /^Bearer[ \t]+(\S.*)$/i

/** The bearer credential of a request, or `AUTH_MISSING`. */
const credentialOf = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Redacted.Redacted<string>, Unauthenticated> => {
  const header = request.headers.authorization?.trim() ?? ""
  const match = BEARER.exec(header)
  if (match?.[1] === undefined) {
    return Effect.fail(
      new Unauthenticated({
        code: "AUTH_MISSING",
        detail: header === "" ? "No Authorization header was sent." : "The Authorization header must be `Bearer <credential>`."
      })
    )
  }
  return Effect.succeed(Redacted.make(match[1].trim()))
}

/** The bearer credential of the current request, or `AUTH_MISSING`. */
export const bearerCredential = Effect.flatMap(HttpServerRequest.HttpServerRequest, credentialOf)

/** A key and the access tokens issued for it share one limit. */
const keyBucket = (principal: Principal) => `key:${principal.keyId}`

/** The caller of a `/v1` route: its credential checked (which puts its tenant on the span), its key's limit counted. */
export const authenticateCaller = Effect.gen(function*() {
  const auth = yield* Auth
  const limiter = yield* RateLimiter
  return Effect.flatMap(bearerCredential, auth.authenticateKey).pipe(
    Effect.tap((principal) => countAgainst(limiter, keyBucket(principal)))
  )
})

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.map(authenticateCaller, (authenticate) => Authentication.of({ bearer: () => authenticate }))
)

/**
 * An operator by its bearer credential or, when it sends none, by its console cookie. A change made
 * with the cookie must come from the server's own origin (SPEC §12), so another site cannot make
 * the browser act for the operator; that is checked before the session is looked up.
 */
const authenticateOperatorRequest = Effect.gen(function*() {
  const auth = yield* Auth
  const sessions = yield* ConsoleSessions
  const byBearer = Effect.flatMap(bearerCredential, auth.authenticateOperator)
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const cookie = request.headers.authorization === undefined ? request.cookies[CONSOLE_COOKIE] : undefined
    if (cookie === undefined) return byBearer
    if (!isSafeMethod(request.method) && !isOwnOrigin(request.headers.origin, request.headers.host)) {
      return Effect.fail(new Forbidden({ detail: "A change made with the console's cookie must come from the server's own origin." }))
    }
    return Effect.map(sessions.check(Redacted.make(cookie)), (session): Operator => ({ _tag: "ConsoleSession", id: session.id, expiresAt: session.expiresAt }))
  })
})

/** Both schemes are decided by the bearer's handler, which HttpApi runs last, so its failure is the one answered. */
const decidedByAdminToken = Effect.fail(new Unauthenticated({ code: "AUTH_MISSING", detail: "No credential was sent." }))

export const AdminAuthenticationLive = Layer.effect(
  AdminAuthentication,
  Effect.gen(function*() {
    const authenticate = yield* authenticateOperatorRequest
    const limiter = yield* RateLimiter
    return AdminAuthentication.of({
      consoleSession: () => decidedByAdminToken,
      // The admin token is the operators' own and is not limited; an admin key is, like any key.
      adminToken: () =>
        authenticate.pipe(
          Effect.tap((operator) => (operator._tag === "AdminKey" ? countAgainst(limiter, keyBucket(operator.principal)) : Effect.void))
        )
    })
  })
)

export const OptionalOperatorLive = Layer.effect(
  OptionalOperator,
  Effect.map(authenticateOperatorRequest, (authenticate) =>
    OptionalOperator.of({
      consoleSession: () => decidedByAdminToken,
      adminToken: () => authenticate
    }))
)
