/**
 * Who is calling. API keys are looked up by their SHA-256; a revoked key is `AUTH_REVOKED`, an
 * unknown one `AUTH_INVALID`. When the database cannot answer, the caller is refused with the
 * database's 503, never let through and never told its credential is bad.
 */
import { Effect, Option, Redacted } from "effect"
import { AdminToken } from "../layers/Secrets.js"
import type { Operator, Principal } from "../src/domain/Principal.js"
import { Forbidden, Unauthenticated } from "../src/errors.js"
import { API_KEY_PREFIX, hashApiKey, secretsEqual } from "./ApiKeys.js"
import { CachedReads } from "./CachedReads.js"
import { KeyRow, TenantsRepo } from "./TenantsRepo.js"

/** Short: revocation invalidates the entry, and this bounds the damage if that invalidation is lost. */
const API_KEY_TTL = "30 seconds"
export const apiKeyCacheKey = (keyHash: string) => `apikey:${keyHash}`

const invalid = new Unauthenticated({ code: "AUTH_INVALID", detail: "The credential is not valid." })

export class Auth extends Effect.Service<Auth>()("bulwark/Auth", {
  effect: Effect.gen(function*() {
    const repo = yield* TenantsRepo
    const cached = yield* CachedReads
    const adminToken = yield* AdminToken

    const authenticateKey = Effect.fn("Auth.authenticateKey")(function*(credential: Redacted.Redacted<string>) {
      const secret = Redacted.value(credential)
      if (!secret.startsWith(API_KEY_PREFIX)) return yield* invalid
      const keyHash = hashApiKey(secret)
      const key = yield* cached.read(apiKeyCacheKey(keyHash), KeyRow, API_KEY_TTL, repo.findKeyByHash(keyHash), {
        sharedOnly: true
      })
      if (Option.isNone(key)) return yield* invalid
      if (key.value.revoked_at !== null) {
        return yield* new Unauthenticated({ code: "AUTH_REVOKED", detail: "This API key has been revoked." })
      }
      yield* Effect.annotateCurrentSpan({ "bulwark.tenant_id": key.value.tenant_id, "bulwark.key_id": key.value.id })
      const principal: Principal = {
        tenantId: key.value.tenant_id,
        keyId: key.value.id,
        allowedAgents: key.value.allowed_agents,
        admin: key.value.is_admin
      }
      return principal
    })

    const authenticateOperator = Effect.fn("Auth.authenticateOperator")(function*(credential: Redacted.Redacted<string>) {
      if (secretsEqual(Redacted.value(credential), Redacted.value(adminToken))) {
        return { _tag: "AdminToken" } satisfies Operator as Operator
      }
      const principal = yield* authenticateKey(credential)
      if (!principal.admin) {
        return yield* new Forbidden({ detail: "This route needs the admin token or an admin API key." })
      }
      return { _tag: "AdminKey", principal } satisfies Operator as Operator
    })

    return { authenticateKey, authenticateOperator } as const
  }),
  dependencies: [TenantsRepo.Default]
}) {}
