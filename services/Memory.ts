/**
 * Shared memory per session (SPEC §4): put, get, list and delete JSON values under keys, with an
 * optional TTL. An expired key is gone at once (every read compares with `Clock`), and a background
 * job deletes expired rows; the job's own failures are ledgered like any other.
 */
import { Clock, Effect, Option, Schedule } from "effect"
import * as Supervised from "../layers/resilience/Supervised.js"
import { MemoryStore, type MemoryRow } from "../layers/memory/MemoryStore.js"
import { MAX_VALUE_BYTES, MemoryEntry, MemoryList, type PutMemory } from "../src/domain/Memory.js"
import { FieldIssue, type MemoryUnavailable, NotFound, type Overloaded, PayloadTooLarge } from "../src/errors.js"
import { ErrorLedger } from "./ErrorLedger.js"
import { sessionNotFound } from "./SessionsRepo.js"

const toEntry = (row: MemoryRow) =>
  new MemoryEntry({ key: row.key, value: JSON.parse(row.value), expires_at: row.expires_at, updated_at: row.updated_at }, {
    disableValidation: true
  })

const keyNotFound = (key: string) =>
  new NotFound({ code: "MEMORY_KEY_NOT_FOUND", detail: `No memory key ${key} exists in this session (or it has expired).` })

const valueTooLarge = new PayloadTooLarge({
  detail: `A memory value may be at most ${MAX_VALUE_BYTES} bytes of JSON.`,
  errors: [new FieldIssue({ pointer: "/value", detail: `must encode to at most ${MAX_VALUE_BYTES} bytes of JSON` })]
})

const isoAt = (millis: number) => new Date(millis).toISOString()

/** How often expired rows are deleted (reads never see them either way). */
const PURGE_EVERY = "1 minute"

export interface MemoryShape {
  /** Sets `key` to `input.value`, expiring after `input.ttl_seconds` when given. */
  readonly put: (
    tenantId: string,
    sessionId: string,
    key: string,
    input: PutMemory
  ) => Effect.Effect<MemoryEntry, PayloadTooLarge | NotFound | MemoryUnavailable | Overloaded>
  readonly get: (tenantId: string, sessionId: string, key: string) => Effect.Effect<MemoryEntry, NotFound | MemoryUnavailable>
  readonly list: (tenantId: string, sessionId: string) => Effect.Effect<MemoryList, NotFound | MemoryUnavailable>
  /** Writes (put, remove) pass the memory store's bulkhead, so they may be `OVERLOADED`. */
  readonly remove: (tenantId: string, sessionId: string, key: string) => Effect.Effect<void, NotFound | MemoryUnavailable | Overloaded>
  /** Deletes the rows that have expired; the count deleted (its own failures are ledgered, and count 0). */
  readonly purgeExpired: Effect.Effect<number>
}

const make = Effect.gen(function*() {
  const store = yield* MemoryStore
  const ledger = yield* ErrorLedger
  const now = Effect.map(Clock.currentTimeMillis, isoAt)

  const put = Effect.fn("Memory.put")(function*(tenantId: string, sessionId: string, key: string, input: PutMemory) {
    const value = JSON.stringify(input.value)
    if (Buffer.byteLength(value, "utf8") > MAX_VALUE_BYTES) return yield* valueTooLarge
    const millis = yield* Clock.currentTimeMillis
    const row = yield* store.put(tenantId, sessionId, {
      key,
      value,
      expires_at: input.ttl_seconds === undefined ? null : isoAt(millis + input.ttl_seconds * 1000),
      updated_at: isoAt(millis)
    })
    if (Option.isNone(row)) return yield* sessionNotFound(sessionId)
    return toEntry(row.value)
  })

  const get = Effect.fn("Memory.get")(function*(tenantId: string, sessionId: string, key: string) {
    const found = yield* store.find(tenantId, sessionId, key, yield* now)
    if (Option.isNone(found)) return yield* sessionNotFound(sessionId)
    if (Option.isNone(found.value)) return yield* keyNotFound(key)
    return toEntry(found.value.value)
  })

  const list = Effect.fn("Memory.list")(function*(tenantId: string, sessionId: string) {
    const rows = yield* store.list(tenantId, sessionId, yield* now)
    if (Option.isNone(rows)) return yield* sessionNotFound(sessionId)
    return new MemoryList({ data: rows.value.map(toEntry) }, { disableValidation: true })
  })

  const remove = Effect.fn("Memory.delete")(function*(tenantId: string, sessionId: string, key: string) {
    const deleted = yield* store.remove(tenantId, sessionId, key, yield* now)
    if (Option.isNone(deleted)) return yield* sessionNotFound(sessionId)
    if (!deleted.value) return yield* keyNotFound(key)
  })

  const purgeExpired = Effect.gen(function*() {
    const deleted = yield* store.purgeExpired(yield* now)
    if (deleted > 0) yield* Effect.logDebug(`memory expiry deleted ${deleted} keys`)
    return deleted
  }).pipe(
    Effect.catchAll((error) => Effect.as(ledger.record(error, { route: "job:memory-expiry" }), 0)),
    Effect.withSpan("Memory.purgeExpired")
  )

  yield* purgeExpired.pipe(Effect.repeat(Schedule.spaced(PURGE_EVERY)), Supervised.loop("memory-expiry"), Effect.forkScoped)

  const service: MemoryShape = { put, get, list, remove, purgeExpired }
  return service
})

export class Memory extends Effect.Service<Memory>()("bulwark/Memory", { scoped: make }) {}
