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
 * knows the address to be past it, a credential it knows was issued is still checked (a key it has
 * found before, an access token, whose signature proves it), so valid ones keep working; any other
 * is refused 429 before it is looked up.
 *
 * Built once per limiter: the request is read from the context, so that a request that passes
 * allocates nothing here.
 */
const addressRules = (limiter: RateLimiter) => {
  const spentAddress = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => limiter.knownSpent(addressBucket(request)))
  return {
    /** Fails 429 while the address is known here to be past its limit (with `RateLimit-*` headers where `counted`). */
    refusedWhileSpent: (counted: boolean) =>
      Effect.flatMap(spentAddress, (spent) =>
        spent === undefined
          ? Effect.void
          : counted
          ? enforce(spent)
          : Effect.fail(new RateLimited({ retryAfterSeconds: spent.reset }))),
    /** A guessed credential counts against the address; past the limit the answer is 429, not 401. */
    countedIfGuessed: (error: Unauthenticated) =>
      error.code === "AUTH_INVALID"
        ? Effect.zipRight(Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => countAgainst(limiter, addressBucket(request))), Effect.fail(error))
        : Effect.fail(error)
  }
}

/** The caller of a `/v1` route: its credential checked (which puts its tenant on the span), its key's limit counted. */
export const authenticateCaller = Effect.gen(function*() {
  const auth = yield* Auth
  const limiter = yield* RateLimiter
  const { countedIfGuessed, refusedWhileSpent } = addressRules(limiter)
  const beforeLookup = refusedWhileSpent(true)
  return Effect.flatMap(bearerCredential, (credential) => auth.authenticateKey(credential, beforeLookup)).pipe(
    Effect.catchTag("Unauthenticated", countedIfGuessed),
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
const authenticateOperatorRequest = (countFailures: boolean) => Effect.gen(function*() {
  const auth = yield* Auth
  const sessions = yield* ConsoleSessions
  const { countedIfGuessed, refusedWhileSpent } = addressRules(yield* RateLimiter)
  // Failed authentications count against the address as on every `/v1` route (see `addressRules`);
  // not on `/health`, whose probes never touch the counters (a refusal there is the anonymous answer).
  const beforeLookup = refusedWhileSpent(countFailures)
  const checked = Effect.flatMap(bearerCredential, (credential) => auth.authenticateOperator(credential, beforeLookup))
  const byBearer = countFailures ? Effect.catchTag(checked, "Unauthenticated", countedIfGuessed) : checked
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
