import { Effect, Option, Schema } from "effect"
import { Database, decodeRow } from "../layers/database/Database.js"

export class KeyRow extends Schema.Class<KeyRow>("KeyRow")({
  id: Schema.String,
  tenant_id: Schema.String,
  name: Schema.NullOr(Schema.String),
  allowed_agents: Schema.parseJson(Schema.Array(Schema.String)),
  is_admin: Schema.Union(Schema.Number, Schema.BigIntFromSelf).pipe(
    Schema.transform(Schema.Boolean, { decode: (n) => Number(n) !== 0, encode: (b) => (b ? 1 : 0) })
  ),
  token_version: Schema.Number,
  created_at: Schema.String,
  revoked_at: Schema.NullOr(Schema.String)
}) {}

const decodeKey = decodeRow(KeyRow)

const make = Effect.gen(function*() {
  const db = yield* Database
  const sql = db.sql

  const insertTenant = (tenant: { id: string; name: string; created_at: string }) =>
    db.insertUnique("tenants.insert", sql`INSERT INTO tenants ${sql.insert(tenant)}`, {
      onUnique: "TENANT_ALREADY_EXISTS",
      conflictDetail: `A tenant named ${JSON.stringify(tenant.name)} already exists.`
    })

  const tenantExists = (id: string) =>
    db.read("tenants.exists", sql<{ id: string }>`SELECT id FROM tenants WHERE id = ${id}`).pipe(
      Effect.map((rows) => rows.length > 0)
    )

  const insertKey = (key: {
    id: string
    tenant_id: string
    name: string | null
    key_hash: string
    allowed_agents: ReadonlyArray<string>
    is_admin: boolean
    created_at: string
  }) =>
    // Ids and hashes are random: a unique violation here is a defect, not a client conflict.
    db.write(
      "api_keys.insert", sql`INSERT INTO api_keys ${
        sql.insert({
          ...key,
          allowed_agents: JSON.stringify(key.allowed_agents),
          is_admin: key.is_admin ? 1 : 0,
          token_version: 0
        })
      }`
    )

  const findKeyByHash = (keyHash: string) =>
    db.read(
      "api_keys.find_by_hash", sql`SELECT id, tenant_id, name, allowed_agents, is_admin, token_version, created_at, revoked_at
          FROM api_keys WHERE key_hash = ${keyHash}`
    ).pipe(Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : Effect.asSome(decodeKey(rows[0]))))

  const findKeyById = (id: string) =>
    db.read(
      "api_keys.find_by_id",
      sql`SELECT id, tenant_id, name, allowed_agents, is_admin, token_version, created_at, revoked_at
          FROM api_keys WHERE id = ${id}`
    ).pipe(Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : Effect.asSome(decodeKey(rows[0]))))

  /** Invalidates every access token issued for the key so far; returns the key's hash for the cache. */
  const bumpTokenVersion = (id: string) =>
    db.transaction(
      "api_keys.bump_token_version",
      Effect.gen(function*() {
        yield* db.write("api_keys.bump_token_version", sql`UPDATE api_keys SET token_version = token_version + 1 WHERE id = ${id}`)
        yield* db.write("change_marks.api_keys", db.changes.keysChanged)
        const rows = yield* db.read("api_keys.find", sql<{ key_hash: string }>`SELECT key_hash FROM api_keys WHERE id = ${id}`)
        return Option.fromNullable(rows[0]?.key_hash)
      })
    )

  /** Marks a live key revoked; returns its hash, or `None` when no key has this id. */
  const revokeKey = (id: string, revokedAt: string) =>
    db.transaction(
      "api_keys.revoke",
      Effect.gen(function*() {
        yield* db.write("api_keys.revoke", sql`UPDATE api_keys SET revoked_at = ${revokedAt} WHERE id = ${id} AND revoked_at IS NULL`)
        yield* db.write("change_marks.api_keys", db.changes.keysChanged)
        const rows = yield* db.read("api_keys.find", sql<{ key_hash: string }>`SELECT key_hash FROM api_keys WHERE id = ${id}`)
        return Option.fromNullable(rows[0]?.key_hash)
      })
    )

  return { insertTenant, tenantExists, insertKey, findKeyByHash, findKeyById, bumpTokenVersion, revokeKey } as const
})

export class TenantsRepo extends Effect.Service<TenantsRepo>()("bulwark/TenantsRepo", { effect: make }) {}
