/** Tenants and their API keys: creation (the key is returned once), revocation. */
import { Effect, Option } from "effect"
import { Database } from "../layers/database/Database.js"
import { NotFound } from "../src/errors.js"
import { generateApiKey, hashApiKey } from "./ApiKeys.js"
import { newId, nowIso } from "./Clock.js"
import { apiKeyCacheKey } from "./Auth.js"
import { CachedReads } from "./CachedReads.js"
import { TenantsRepo } from "./TenantsRepo.js"

export interface NewKeyOptions {
  readonly name?: string | undefined
  readonly allowedAgents?: ReadonlyArray<string> | undefined
  readonly admin?: boolean | undefined
}

/** A key created without a list may post as any agent; narrow it with `allowed_agents`. */
const DEFAULT_ALLOWED_AGENTS: ReadonlyArray<string> = ["*"]

export class Tenants extends Effect.Service<Tenants>()("bulwark/Tenants", {
  effect: Effect.gen(function*() {
    const repo = yield* TenantsRepo
    const db = yield* Database
    const cached = yield* CachedReads

    const issueKey = Effect.fn("Tenants.issueKey")(function*(tenantId: string, options: NewKeyOptions) {
      const apiKey = generateApiKey()
      const key = {
        id: yield* newId,
        tenant_id: tenantId,
        name: options.name ?? null,
        key_hash: hashApiKey(apiKey),
        allowed_agents: options.allowedAgents ?? DEFAULT_ALLOWED_AGENTS,
        is_admin: options.admin ?? false,
        created_at: yield* nowIso
      }
      yield* repo.insertKey(key)
      return {
        id: key.id,
        tenant_id: tenantId,
        name: key.name,
        api_key: apiKey,
        allowed_agents: key.allowed_agents,
        admin: key.is_admin,
        created_at: key.created_at
      }
    })

    const createTenant = Effect.fn("Tenants.createTenant")(function*(name: string) {
      const tenant = { id: yield* newId, name, created_at: yield* nowIso }
      const key = yield* db.transaction(
        "tenants.create",
        Effect.zipRight(repo.insertTenant(tenant), issueKey(tenant.id, { name: "default" }))
      )
      return { ...tenant, api_key: key.api_key, api_key_id: key.id }
    })

    const createKey = Effect.fn("Tenants.createKey")(function*(tenantId: string, options: NewKeyOptions) {
      if (!(yield* repo.tenantExists(tenantId))) {
        return yield* new NotFound({ code: "TENANT_NOT_FOUND", detail: `No tenant ${tenantId} exists.` })
      }
      return yield* issueKey(tenantId, options)
    })

    const revokeKey = Effect.fn("Tenants.revokeKey")(function*(keyId: string) {
      const keyHash = yield* repo.revokeKey(keyId, yield* nowIso)
      if (Option.isNone(keyHash)) {
        return yield* new NotFound({ code: "KEY_NOT_FOUND", detail: `No API key ${keyId} exists.` })
      }
      yield* cached.invalidate(apiKeyCacheKey(keyHash.value))
    })

    return { createTenant, createKey, revokeKey } as const
  }),
  dependencies: [TenantsRepo.Default]
}) {}
