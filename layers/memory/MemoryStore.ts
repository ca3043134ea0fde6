/**
 * The memory store (SPEC §4, §5): per-session keys with JSON values and optional expiry. It lives in
 * the database today, but it is its own dependency: its own breaker, retry budget and write
 * bulkhead, and its own error (`MemoryUnavailable`, 503), so `/health` and the breaker admin show it
 * apart from the database, and it could move to another store without touching its callers.
 *
 * Each call answers whether the session exists in the same statement that reads or writes the key,
 * so "no such session" and "no such key" come from one consistent look. Concurrent puts are
 * group-committed, as message posts are.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option } from "effect"
import { MemoryUnavailable, type Overloaded } from "../../src/errors.js"
import type { CircuitBreaker } from "../resilience/CircuitBreaker.js"
import * as GroupCommit from "../database/GroupCommit.js"
import { Database, type DatabaseResilience, defaultResilience, makeGuards } from "../database/Database.js"
import { translateSqlError } from "../database/errors.js"

export interface MemoryRow {
  readonly key: string
  /** JSON text. */
  readonly value: string
  readonly expires_at: string | null
  readonly updated_at: string
}

/** `None`: the session does not exist for this tenant. */
export type InSession<A> = Option.Option<A>

export interface MemoryStoreShape {
  /** Inserts or replaces the key; `None` when the session does not exist. */
  readonly put: (tenantId: string, sessionId: string, row: MemoryRow) => Effect.Effect<InSession<MemoryRow>, MemoryUnavailable | Overloaded>
  /** The live (unexpired at `now`) entry, if any. */
  readonly find: (tenantId: string, sessionId: string, key: string, now: string) => Effect.Effect<InSession<Option.Option<MemoryRow>>, MemoryUnavailable>
  /** Live entries, by key. */
  readonly list: (tenantId: string, sessionId: string, now: string) => Effect.Effect<InSession<ReadonlyArray<MemoryRow>>, MemoryUnavailable>
  /** Whether a live entry was deleted. */
  readonly remove: (tenantId: string, sessionId: string, key: string, now: string) => Effect.Effect<InSession<boolean>, MemoryUnavailable | Overloaded>
  /** Deletes entries expired at `now`; returns how many. */
  readonly purgeExpired: (now: string) => Effect.Effect<number, MemoryUnavailable | Overloaded>
  /** A round trip, for `/health`. */
  readonly ping: Effect.Effect<void, MemoryUnavailable>
  readonly breaker: CircuitBreaker<MemoryUnavailable>
}

const isMemoryUnavailable = (error: unknown): error is MemoryUnavailable => error instanceof MemoryUnavailable

/** Puts per group-committed transaction at most. */
const MAX_PUT_BATCH = 64

interface Put {
  readonly tenantId: string
  readonly sessionId: string
  readonly row: MemoryRow
}

export class MemoryStore extends Context.Tag("bulwark/MemoryStore")<MemoryStore, MemoryStoreShape>() {
  static readonly make = (resilience: DatabaseResilience = defaultResilience) =>
    Effect.gen(function*() {
      const { sql, runsOnTheLoop } = yield* Database
      const { breaker, retry, writes } = yield* makeGuards<MemoryUnavailable>({
        dependency: "memory",
        resilience,
        runsOnTheLoop,
        isUnavailable: isMemoryUnavailable,
        unavailable: (fields) => new MemoryUnavailable(fields)
      })

      const attempt = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
        effect.pipe(
          Effect.catchTag("SqlError", translateSqlError(operation)),
          Effect.mapError(({ cause, reason, retryAfterSeconds, transient }) =>
            new MemoryUnavailable({ operation, reason, transient, retryAfterSeconds, cause })
          )
        )
      const span = (operation: string) => Effect.withSpan(`memory.${operation}`, { attributes: { "db.operation.name": operation } })
      const read = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
        retry(breaker.run(attempt(operation, effect))).pipe(span(operation))
      const write = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
        retry(breaker.run(writes.run(attempt(operation, effect)))).pipe(span(operation))

      const sessionExists = (tenantId: string, sessionId: string) =>
        sql`SELECT 1 AS found FROM sessions WHERE tenant_id = ${tenantId} AND id = ${sessionId}`.pipe(Effect.map((rows) => rows.length > 0))

      // The insert happens only if the session exists; one statement, so a concurrent delete of the
      // session either sees this key (and cascades it) or this insert sees no session.
      const upsert = ({ row, sessionId, tenantId }: Put) =>
        sql<MemoryRow>`INSERT INTO memory (tenant_id, session_id, key, value, expires_at, updated_at)
          SELECT ${tenantId}, ${sessionId}, ${row.key}, ${row.value}, ${row.expires_at}, ${row.updated_at}
          WHERE EXISTS (SELECT 1 FROM sessions WHERE tenant_id = ${tenantId} AND id = ${sessionId})
          ON CONFLICT (tenant_id, session_id, key)
          DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at
          RETURNING key, value, expires_at, updated_at`.pipe(Effect.map((rows): InSession<MemoryRow> => Option.fromNullable(rows[0])))

      const putOne = (item: Put) => write("memory.put", upsert(item))

      /**
       * Puts of one event-loop turn in one transaction (see `GroupCommit`): each is the statement a
       * put alone runs, in the order they came, so two puts of one key end as they would one after
       * the other. Every typed failure is the store's (unreachable, locked, overloaded), so it is
       * every caller's; a defect sends the batch back put by put.
       */
      const grouped = yield* GroupCommit.make({
        name: "memory.put",
        maxBatch: MAX_PUT_BATCH,
        writeBatch: (items) =>
          items.length === 1
            ? Effect.map(putOne(items[0]!), (stored) => [stored])
            : write("memory.put_batch", sql.withTransaction(Effect.forEach(items, upsert))),
        writeOne: putOne,
        isShared: () => true
      })

      const put: MemoryStoreShape["put"] = (tenantId, sessionId, row) => grouped.submit({ tenantId, sessionId, row })

      const liveEntries = (tenantId: string, sessionId: string, now: string, key: Option.Option<string>) =>
        sql<{ session: string; key: string | null; value: string | null; expires_at: string | null; updated_at: string | null }>`
          SELECT s.id AS session, m.key, m.value, m.expires_at, m.updated_at
          FROM sessions s
          LEFT JOIN memory m ON m.tenant_id = s.tenant_id AND m.session_id = s.id
            AND (m.expires_at IS NULL OR m.expires_at > ${now})
            ${Option.match(key, { onNone: () => sql``, onSome: (k) => sql`AND m.key = ${k}` })}
          WHERE s.tenant_id = ${tenantId} AND s.id = ${sessionId}
          ORDER BY m.key`.pipe(
          Effect.map((rows): InSession<ReadonlyArray<MemoryRow>> =>
            rows.length === 0
              ? Option.none()
              : Option.some(rows.flatMap((r) =>
                r.key === null || r.value === null || r.updated_at === null
                  ? []
                  : [{ key: r.key, value: r.value, expires_at: r.expires_at, updated_at: r.updated_at }]
              ))
          )
        )

      const find: MemoryStoreShape["find"] = (tenantId, sessionId, key, now) =>
        read("memory.find", liveEntries(tenantId, sessionId, now, Option.some(key))).pipe(
          Effect.map(Option.map((rows) => Option.fromNullable(rows[0])))
        )

      const list: MemoryStoreShape["list"] = (tenantId, sessionId, now) =>
        read("memory.list", liveEntries(tenantId, sessionId, now, Option.none()))

      const remove: MemoryStoreShape["remove"] = (tenantId, sessionId, key, now) =>
        write(
          "memory.delete",
          Effect.gen(function*() {
            const deleted = yield* sql<{ key: string }>`DELETE FROM memory
              WHERE tenant_id = ${tenantId} AND session_id = ${sessionId} AND key = ${key}
                AND (expires_at IS NULL OR expires_at > ${now})
              RETURNING key`
            if (deleted.length > 0) return Option.some(true)
            return (yield* sessionExists(tenantId, sessionId)) ? Option.some(false) : Option.none()
          })
        )

      const purgeExpired: MemoryStoreShape["purgeExpired"] = (now) =>
        write("memory.purge", sql<{ key: string }>`DELETE FROM memory WHERE expires_at IS NOT NULL AND expires_at <= ${now} RETURNING key`).pipe(
          Effect.map((rows) => rows.length)
        )

      const ping = Effect.asVoid(read("memory.ping", sql`SELECT key FROM memory LIMIT 1`))

      return MemoryStore.of({ put, find, list, remove, purgeExpired, ping, breaker })
    })

  static readonly layer = (resilience?: DatabaseResilience) => Layer.effect(MemoryStore, MemoryStore.make(resilience))
}
