/**
 * Access tokens (SPEC §4): HS256 JWTs through `jose`, 15 minutes, carrying the tenant, the key id,
 * the key's token version and its allowed agents. Only HS256 is accepted (`alg: none` and any
 * switch of algorithm are refused by `jose`), and the signature check is jose's constant-time HMAC
 * verification. Time comes from Effect's `Clock`, so expiry is testable with `TestClock`.
 */
import { Clock, Effect, Redacted, Schema } from "effect"
import { errors as JoseErrors, jwtVerify, SignJWT } from "jose"
import { JwtSecret } from "../layers/Secrets.js"
import type { Principal } from "../src/domain/Principal.js"
import { Unauthenticated } from "../src/errors.js"

export const ACCESS_TOKEN_SECONDS = 15 * 60
const ISSUER = "bulwark"

const Claims = Schema.Struct({
  sub: Schema.String,
  tid: Schema.String,
  ver: Schema.Int,
  agents: Schema.Array(Schema.String),
  iat: Schema.Int,
  exp: Schema.Int
})
export type Claims = typeof Claims.Type

const invalid = new Unauthenticated({ code: "AUTH_INVALID", detail: "The credential is not valid." })
const expired = new Unauthenticated({ code: "AUTH_EXPIRED", detail: "The access token has expired." })

/** What jose throws for a token that is not valid: the client's doing, so 401. */
const INVALID_TOKEN_CODES: ReadonlySet<string> = new Set([
  JoseErrors.JWSInvalid.code,
  JoseErrors.JWTInvalid.code,
  JoseErrors.JWSSignatureVerificationFailed.code,
  JoseErrors.JWTClaimValidationFailed.code,
  JoseErrors.JOSEAlgNotAllowed.code,
  JoseErrors.JOSENotSupported.code
])

/**
 * A refused token is 401; anything else jose or the runtime throws (a key it cannot import, a
 * crypto failure, a bug) is a defect, never dressed up as the client's invalid credential.
 */
const refusalOf = (error: unknown): Effect.Effect<never, Unauthenticated> => {
  if (error instanceof JoseErrors.JWTExpired) return Effect.fail(expired)
  if (error instanceof JoseErrors.JOSEError && INVALID_TOKEN_CODES.has(error.code)) return Effect.fail(invalid)
  return Effect.die(error)
}

export class AccessTokens extends Effect.Service<AccessTokens>()("bulwark/AccessTokens", {
  effect: Effect.gen(function*() {
    const secret = yield* JwtSecret
    const key = new TextEncoder().encode(Redacted.value(secret))

    const issue = Effect.fn("AccessTokens.issue")(function*(principal: Principal) {
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const token = yield* Effect.promise(() =>
        new SignJWT({ tid: principal.tenantId, ver: principal.tokenVersion, agents: [...principal.allowedAgents] })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setSubject(principal.keyId)
          .setIssuer(ISSUER)
          .setIssuedAt(now)
          .setExpirationTime(now + ACCESS_TOKEN_SECONDS)
          .sign(key)
      )
      return { access_token: token, token_type: "Bearer" as const, expires_in: ACCESS_TOKEN_SECONDS }
    })

    /** Checks signature, algorithm, issuer and expiry; says nothing yet of revocation. */
    const verify = Effect.fn("AccessTokens.verify")(function*(token: string) {
      const now = yield* Clock.currentTimeMillis
      const verified = yield* Effect.tryPromise({
        try: () => jwtVerify(token, key, { algorithms: ["HS256"], issuer: ISSUER, currentDate: new Date(now) }),
        catch: (error) => error
      }).pipe(Effect.catchAll(refusalOf))
      return yield* Schema.decodeUnknown(Claims)(verified.payload).pipe(Effect.mapError(() => invalid))
    })

    return { issue, verify } as const
  })
}) {}
