/**
 * Idempotency keys (SPEC §4). A POST with `Idempotency-Key` runs its write and stores its result in
 * one transaction, keyed by the caller's scope (the tenant, or the operators) and the key. A repeat
 * with the same body within 24 h returns the stored result and writes nothing; with a different
 * body it is 409 `IDEMPOTENCY_KEY_REUSED`. Two identical requests racing: the second's transaction
 * fails on the key and rolls back its write, then it answers with the first's result.
 * Only successes are stored: a request that failed may be retried with the same key.
 */
import { Clock, Effect, Option, Schema } from "effect"
import { sha256Hex } from "../src/Digests.js"
import { Database } from "../layers/database/Database.js"
import { Conflict } from "../src/errors.js"
import { nowIso } from "./Clock.js"

export const IDEMPOTENCY_WINDOW_MILLIS = 24 * 60 * 60 * 1000

/** Canonical JSON (sorted keys), so the same body in another key order is the same request. */
const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(",")}]`
    : value !== null && typeof value === "object"
    ? `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`).join(",")}}`
    : JSON.stringify(value) ?? "null"

export const requestHash = (operation: string, body: unknown): string =>
  sha256Hex(`${operation}\n${canonical(body)}`)

const reused = new Conflict({
  code: "IDEMPOTENCY_KEY_REUSED",
  detail: "This Idempotency-Key was already used with a different request."
})

export class Idempotency extends Effect.Service<Idempotency>()("bulwark/Idempotency", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    const find = (scope: string, key: string) =>
      db.read(
        "idempotency_keys.find",
        sql<{ request_hash: string; response: string; created_at: string }>`SELECT request_hash, response, created_at
            FROM idempotency_keys WHERE scope = ${scope} AND key = ${key}`
      ).pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

    /**
     * Runs `write` at most once per (scope, key, body): the first result is stored with the write,
     * repeats get it back. Without a key, `write` just runs.
     */
    const run = <A, I, E, R>(options: {
      readonly scope: string
      readonly key: string | undefined
      readonly operation: string
      readonly body: unknown
      readonly result: Schema.Schema<A, I>
      readonly write: Effect.Effect<A, E, R>
    }) => {
      const { key, scope } = options
      if (key === undefined) return options.write
      const hash = requestHash(options.operation, options.body)
      const encode = Schema.encode(Schema.parseJson(options.result))
      const decode = Schema.decode(Schema.parseJson(options.result))

      const replayOrRefuse = (stored: { request_hash: string; response: string }) =>
        stored.request_hash !== hash
          ? Effect.fail(reused)
          // We wrote it with the same schema: one that no longer decodes is corrupt data, a defect.
          : decode(stored.response).pipe(Effect.orDieWith(() => new Error("a stored idempotent response no longer decodes")))

      const firstTime = (now: number) =>
        db.transaction(
          `idempotency.${options.operation}`,
          Effect.gen(function*() {
            const cutoff = new Date(now - IDEMPOTENCY_WINDOW_MILLIS).toISOString()
            yield* db.write("idempotency_keys.expire", sql`DELETE FROM idempotency_keys WHERE scope = ${scope} AND key = ${key} AND created_at < ${cutoff}`)
            const value = yield* options.write
            // Encoding our own success value with its own schema cannot fail short of a bug.
            const response = yield* encode(value).pipe(Effect.orDie)
            yield* db.insertUnique(
              "idempotency_keys.insert",
              sql`INSERT INTO idempotency_keys ${sql.insert({ scope, key, request_hash: hash, response, created_at: yield* nowIso })}`,
              { onUnique: "IDEMPOTENCY_KEY_REUSED", conflictDetail: reused.detail }
            )
            return value
          })
        )

      return Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const stored = yield* find(scope, key)
        if (Option.isSome(stored) && Date.parse(stored.value.created_at) > now - IDEMPOTENCY_WINDOW_MILLIS) {
          return yield* replayOrRefuse(stored.value)
        }
        return yield* firstTime(now).pipe(
          // Another request with this key committed first (the only source of this code inside the
          // transaction is the insert above): this one's write was rolled back; answer as a repeat.
          Effect.catchIf(
            (error): error is Conflict => error instanceof Conflict && error.code === "IDEMPOTENCY_KEY_REUSED",
            () => Effect.flatMap(find(scope, key), Option.match({ onNone: () => Effect.fail(reused), onSome: replayOrRefuse }))
          )
        )
      }).pipe(Effect.withSpan("Idempotency.run", { attributes: { "bulwark.idempotency.operation": options.operation } }))
    }

    return { run } as const
  })
}) {}
