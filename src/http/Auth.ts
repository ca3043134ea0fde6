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
import { Forbidden, RateLimited, Unauthenticated } from "../errors.js"
import { isOwnOrigin, isSafeMethod } from "./Origin.js"
import { addressBucket, countAgainst, enforce } from "./RateLimit.js"

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

/**
 * Failed authentications count against the client address's own limit (SPEC §4), so that guessing
 * keys costs the guesser and not the database. Only a credential this server never issued counts
 * (`AUTH_INVALID`: an unknown key, a bad signature, not a credential at all): a revoked key or an
 * expired token was issued here, and a client that keeps sending one must not lock its address's
 * other keys out. Past the limit the failure is answered 429 instead of 401. While this process
 * knows the address to be past it, a credential is still checked wherever that needs no database
 * (a key held in process, an access token's signature), so valid ones keep working; one that would
 * need a lookup is refused 429 before it.
 */
const refusedWhileSpent = (limiter: RateLimiter, request: HttpServerRequest.HttpServerRequest, counted = true) =>
  Effect.suspend(() =>
    Effect.flatMap(limiter.knownSpent(addressBucket(request)), (spent) =>
      spent === undefined
        ? Effect.void
        : counted
        ? enforce(spent)
        : Effect.fail(new RateLimited({ retryAfterSeconds: spent.reset })))
  )

const countedIfGuessed = (limiter: RateLimiter, request: HttpServerRequest.HttpServerRequest) => (error: Unauthenticated) =>
  error.code === "AUTH_INVALID" ? Effect.zipRight(countAgainst(limiter, addressBucket(request)), Effect.fail(error)) : Effect.fail(error)

/** The caller of a `/v1` route: its credential checked (which puts its tenant on the span), its key's limit counted. */
export const authenticateCaller = Effect.gen(function*() {
  const auth = yield* Auth
  const limiter = yield* RateLimiter
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.flatMap(credentialOf(request), (credential) => auth.authenticateKey(credential, refusedWhileSpent(limiter, request))).pipe(
      Effect.catchTag("Unauthenticated", countedIfGuessed(limiter, request)),
      Effect.tap((principal) => countAgainst(limiter, keyBucket(principal)))
    ))
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
const authenticateOperatorRequest = (countFailures: boolean) => Effect.gen(function*() {
  const auth = yield* Auth
  const sessions = yield* ConsoleSessions
  const limiter = yield* RateLimiter
  // Failed authentications count against the address as on every `/v1` route (see `refusedWhileSpent`);
  // not on `/health`, whose probes never touch the counters (a refusal there is the anonymous answer).
  const byBearer = (request: HttpServerRequest.HttpServerRequest) => {
    const checked = Effect.flatMap(credentialOf(request), (credential) => auth.authenticateOperator(credential, refusedWhileSpent(limiter, request, countFailures)))
    return countFailures ? Effect.catchTag(checked, "Unauthenticated", countedIfGuessed(limiter, request)) : checked
  }
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const cookie = request.headers.authorization === undefined ? request.cookies[CONSOLE_COOKIE] : undefined
    if (cookie === undefined) return byBearer(request)
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
    const authenticate = yield* authenticateOperatorRequest(true)
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
  Effect.map(authenticateOperatorRequest(false), (authenticate) =>
    OptionalOperator.of({
      consoleSession: () => decidedByAdminToken,
      adminToken: () => authenticate
    }))
)
