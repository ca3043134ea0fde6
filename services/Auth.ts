/**
 * Who is calling: an API key (looked up by its SHA-256) or an access token issued for one (checked
 * against its key on every request). Unknown or malformed is `AUTH_INVALID`, a revoked key or token
 * `AUTH_REVOKED`, an expired token `AUTH_EXPIRED`. When the database cannot answer, the caller is
 * refused with the database's 503, never let through and never told its credential is bad.
 *
 * A caller may pass `beforeLookup`: it runs before an API key this process has never found is looked
 * up in the database, and may refuse there (the edge does while the client's address is past its
 * limit). Keys this process has found before, and access tokens (whose signature proves them
 * without the database), never meet it.
 */
import { Effect, Option, Redacted } from "effect"
import { AdminToken } from "../layers/Secrets.js"
import type { Operator, Principal } from "../src/domain/Principal.js"
import { type CacheUnavailable, type DbOperational, Forbidden, type Overloaded, Unauthenticated } from "../src/errors.js"
import { secretsEqual } from "../src/Digests.js"
import { currentSpanOf } from "../src/telemetry/CurrentSpan.js"
import { API_KEY_PREFIX, hashApiKey } from "./ApiKeys.js"
import { CachedReads } from "./CachedReads.js"
import { AccessTokens } from "./AccessTokens.js"
import { KeyRow, TenantsRepo } from "./TenantsRepo.js"

/** Short: revocation invalidates the entry, and this bounds the damage if that invalidation is lost. */
const API_KEY_TTL = "30 seconds"
/**
 * Set on the current span (for a `/v1` request, its server span) once the caller is known, so that
 * a failure can be ledgered with its tenant.
 */
export const TENANT_ATTRIBUTE = "bulwark.tenant_id"

export const apiKeyCacheKey = (keyHash: string) => `apikey:${keyHash}`

const invalid = new Unauthenticated({ code: "AUTH_INVALID", detail: "The credential is not valid." })

const revoked = (detail: string) => new Unauthenticated({ code: "AUTH_REVOKED", detail })

const principalOf = (key: KeyRow, credential: Principal["credential"]): Principal => ({
  tenantId: key.tenant_id,
  keyId: key.id,
  allowedAgents: key.allowed_agents,
  admin: key.is_admin,
  credential,
  tokenVersion: key.token_version
})

/** Enough for every key in use on an instance; each entry is a 64-character hash. */
const MAX_ISSUED_KEYS = 50_000

/** Three base64url segments: the shape of a JWT. Anything else that is not a key is invalid at once. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** An access token as `POST /v1/auth/token` answers it. */
export interface IssuedToken {
  readonly access_token: string
  readonly token_type: "Bearer"
  readonly expires_in: number
}

export interface AuthShape {
  /** The caller a `/v1` or `/mcp` bearer credential (an API key or an access token) stands for. */
  readonly authenticateKey: <E = never, R = never>(
    credential: Redacted.Redacted<string>,
    beforeLookup?: Effect.Effect<void, E, R>
  ) => Effect.Effect<Principal, Unauthenticated | DbOperational | CacheUnavailable | E, R>
  /** An operator: the admin token, or an admin API key (any other key is 403). */
  readonly authenticateOperator: <E = never, R = never>(
    credential: Redacted.Redacted<string>,
    beforeLookup?: Effect.Effect<void, E, R>
  ) => Effect.Effect<Operator, Unauthenticated | Forbidden | DbOperational | CacheUnavailable | E, R>
  /** `POST /v1/auth/token`: an API key (only a key, not a token) for a 15-minute access token. */
  readonly exchange: (apiKey: Redacted.Redacted<string>) => Effect.Effect<IssuedToken, Unauthenticated | DbOperational | CacheUnavailable>
  /** `POST /v1/auth/revoke`: every access token issued for the caller's key so far stops working. */
  readonly revokeTokens: (principal: Principal) => Effect.Effect<void, Forbidden | DbOperational | Overloaded | CacheUnavailable>
}

export class Auth extends Effect.Service<Auth>()("bulwark/Auth", {
  effect: Effect.gen(function*() {
    const repo = yield* TenantsRepo
    const cached = yield* CachedReads
    const adminToken = yield* AdminToken
    const tokens = yield* AccessTokens

    /**
     * Hashes of the keys this process has found in the database: each was issued here, whatever its
     * state now, so it is never held up by `beforeLookup` as a guess would be. Not the key cache,
     * whose entries go whenever keys may have changed (on SQLite, at every commit of another connection), but a memory of
     * which keys exist, the oldest forgotten first.
     */
    const issued = new Set<string>()
    const found = (keyHash: string) => (key: Option.Option<KeyRow>) => {
      if (Option.isSome(key)) {
        issued.delete(keyHash)
        issued.add(keyHash)
        if (issued.size > MAX_ISSUED_KEYS) issued.delete(issued.values().next().value!)
      }
    }

    // Untraced, like `authenticateKey`, which calls it; its database read has its own span. Plain
    // steps rather than a generator: it runs on every request.
    const authenticateApiKey = <E = never, R = never>(
      secret: string,
      beforeLookup?: Effect.Effect<void, E, R>
    ): Effect.Effect<Principal, Unauthenticated | DbOperational | CacheUnavailable | E, R> => {
      const keyHash = hashApiKey(secret)
      const lookup = beforeLookup === undefined
        ? () => Effect.tap(repo.findKeyByHash(keyHash), found(keyHash))
        : () => Effect.tap(issued.has(keyHash) ? repo.findKeyByHash(keyHash) : Effect.zipRight(beforeLookup, repo.findKeyByHash(keyHash)), found(keyHash))
      return Effect.flatMap(
        cached.readUntilKeysChange(apiKeyCacheKey(keyHash), API_KEY_TTL, lookup),
        (key) => {
          if (Option.isNone(key)) return invalid
          if (key.value.revoked_at !== null) return revoked("This API key has been revoked.")
          return Effect.succeed(principalOf(key.value, "api_key"))
        }
      )
    }

    /**
     * An access token is checked against the database on every request: its key must still exist,
     * be live, and have the token's version. If the database cannot answer, the request fails
     * with the database's 503; a token is never let through unchecked.
     */
    const authenticateAccessToken = Effect.fnUntraced(function*(token: string) {
      const claims = yield* tokens.verify(token)
      const key = yield* repo.findKeyById(claims.sub)
      if (Option.isNone(key) || key.value.tenant_id !== claims.tid) return yield* revoked("The key of this token no longer exists.")
      if (key.value.revoked_at !== null) return yield* revoked("The key of this token has been revoked.")
      if (key.value.token_version !== claims.ver) return yield* revoked("This access token has been revoked.")
      return principalOf(key.value, "access_token")
    })

    // Not a span of its own: it runs on every request, mostly from memory, and a span would cost more
    // than the check; its tenant and key are set on the request's span, its database reads have theirs.
    const authenticateKey = <E = never, R = never>(credential: Redacted.Redacted<string>, beforeLookup?: Effect.Effect<void, E, R>) => {
      const secret = Redacted.value(credential)
      const principal: Effect.Effect<Principal, Unauthenticated | DbOperational | CacheUnavailable | E, R> = secret.startsWith(API_KEY_PREFIX)
        ? authenticateApiKey(secret, beforeLookup)
        : JWT_SHAPE.test(secret)
        ? authenticateAccessToken(secret)
        : invalid
      // On the span as `Effect.annotateCurrentSpan` would put them, in one step rather than five.
      return Effect.flatMap(principal, (caller) =>
        Effect.withFiberRuntime<Principal>((fiber) => {
          const span = currentSpanOf(fiber)
          span?.attribute(TENANT_ATTRIBUTE, caller.tenantId)
          span?.attribute("bulwark.key_id", caller.keyId)
          return Effect.succeed(caller)
        }))
    }

    const authenticateOperator = Effect.fn("Auth.authenticateOperator")(function*<E = never, R = never>(
      credential: Redacted.Redacted<string>,
      beforeLookup?: Effect.Effect<void, E, R>
    ) {
      if (secretsEqual(Redacted.value(credential), Redacted.value(adminToken))) {
        return { _tag: "AdminToken" } satisfies Operator as Operator
      }
      const principal = yield* authenticateKey(credential, beforeLookup)
      if (!principal.admin) {
        return yield* new Forbidden({ detail: "This route needs the admin token or an admin API key." })
      }
      return { _tag: "AdminKey", principal } satisfies Operator as Operator
    })

    /** `POST /v1/auth/token`: an API key (only a key, not a token) for a 15-minute access token. */
    const exchange = Effect.fn("Auth.exchange")(function*(apiKey: Redacted.Redacted<string>) {
      const secret = Redacted.value(apiKey)
      if (!secret.startsWith(API_KEY_PREFIX)) return yield* invalid
      return yield* tokens.issue(yield* authenticateApiKey(secret))
    })

    /** `POST /v1/auth/revoke`: every access token issued for the caller's key so far stops working. */
    const revokeTokens = Effect.fn("Auth.revokeTokens")(function*(principal: Principal) {
      if (principal.credential !== "api_key") {
        return yield* new Forbidden({ detail: "Revoke access tokens with the API key itself, not with a token." })
      }
      const keyHash = yield* repo.bumpTokenVersion(principal.keyId)
      if (Option.isSome(keyHash)) yield* cached.invalidate(apiKeyCacheKey(keyHash.value))
    })

    const service: AuthShape = { authenticateKey, authenticateOperator, exchange, revokeTokens }
    return service
  }),
  dependencies: [TenantsRepo.Default, AccessTokens.Default]
}) {}
