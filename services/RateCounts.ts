/**
 * Rate counts kept in the database, for instances that share a server database and no Redis
 * (SPEC §8: rate limits hold across instances, Redis when set, else the database).
 *
 * A write per request would turn every read into a write, so each instance takes its counts in
 * leases: one statement adds a few units to the bucket's window in the database and says how many
 * were taken before; the instance then counts the granted ones in memory. The limit is never
 * exceeded across instances (every unit served was taken from the shared count); units an instance
 * leased and did not use are lost to the others, so leases shrink to one unit as the count nears
 * the limit. Once a window is used up it is refused here without asking the database again.
 */
import { Clock, Deferred, Effect, FiberId, Schedule } from "effect"
import * as Supervised from "../layers/resilience/Supervised.js"
import { Database } from "../layers/database/Database.js"
import type { DbOperational } from "../src/errors.js"
import { ErrorLedger } from "./ErrorLedger.js"

export interface LeasedCounterOptions {
  readonly limit: number
  readonly windowMillis: number
  /** The most units one lease takes (an eighth of what is left, if less). */
  readonly maxLease?: number
}

interface Lease {
  readonly window: number
  /** Units taken by every instance before this lease. */
  readonly before: number
  readonly granted: number
  used: number
}

const MAX_BUCKETS = 100_000

export const makeLeasedCounter = (options: LeasedCounterOptions) =>
  Effect.gen(function*() {
    const db = yield* Database
    const ledger = yield* ErrorLedger
    const sql = db.sql
    const maxLease = options.maxLease ?? 64
    const { limit } = options
    const leases = new Map<string, Lease>()
    const leasing = new Map<string, Deferred.Deferred<void>>()

    /** A fraction of what is left, so that units stranded in other instances' leases stay few. */
    const leaseSize = (takenBefore: number) => Math.max(1, Math.min(maxLease, Math.floor((limit - takenBefore) / 8)))

    // Guarded as a read (retry, breaker, timeout; no bulkhead): a read request must not be refused
    // OVERLOADED because writes are queued, and one lease serves many requests.
    const lease = (bucket: string, window: number, size: number) =>
      db.read(
        "rate_counts.lease",
        sql<{ taken: number | string }>`INSERT INTO rate_counts (bucket, window_index, taken) VALUES (${bucket}, ${window}, ${size})
          ON CONFLICT (bucket) DO UPDATE SET
            taken = CASE WHEN rate_counts.window_index = excluded.window_index THEN rate_counts.taken + excluded.taken ELSE excluded.taken END,
            window_index = excluded.window_index
          RETURNING taken`
      )

    /** Counts one request against `bucket` in `window`; the count so far, this one included (over `limit`: refused). */
    const increment = (bucket: string, window: number): Effect.Effect<number, DbOperational> => {
      const current = leases.get(bucket)
      if (current !== undefined && current.window === window) {
        if (current.used < current.granted) {
          current.used++
          return Effect.succeed(current.before + current.used)
        }
        // Used up everywhere (counts never go down within a window): refused without asking again.
        if (current.before + current.granted >= limit) return Effect.succeed(limit + 1)
      }
      // One lease in flight per bucket: concurrent requests wait for it and share what it grants.
      // Each taking its own would replace the others' leases here, and strand their units.
      const inFlight = leasing.get(bucket)
      if (inFlight !== undefined) return Effect.zipRight(Deferred.await(inFlight), Effect.suspend(() => increment(bucket, window)))
      const takenBefore = current !== undefined && current.window === window ? current.before + current.granted : 0
      const size = leaseSize(takenBefore)
      const leased = Deferred.unsafeMake<void>(FiberId.none)
      leasing.set(bucket, leased)
      const settled = Effect.suspend(() => {
        leasing.delete(bucket)
        return Deferred.succeed(leased, undefined)
      })
      return Effect.flatMap(lease(bucket, window, size), (rows) => {
        // An upsert with RETURNING answers one row; none is a bug, never a count of zero.
        if (rows[0] === undefined) return Effect.dieMessage("the rate-count lease returned no row")
        const before = Number(rows[0].taken) - size
        const granted = Math.max(0, Math.min(size, limit - before))
        leases.set(bucket, { window, before, granted, used: granted > 0 ? 1 : 0 })
        if (leases.size > MAX_BUCKETS) for (const [key, old] of leases) if (old.window < window) leases.delete(key)
        return Effect.succeed(granted > 0 ? before + 1 : limit + 1)
      }).pipe(Effect.ensuring(settled))
    }

    /** Deletes the rows of windows that are over, so the table holds only the buckets counted lately. */
    const purgePast = Effect.gen(function*() {
      const window = Math.floor((yield* Clock.currentTimeMillis) / options.windowMillis)
      yield* db.write("rate_counts.purge", sql`DELETE FROM rate_counts WHERE window_index < ${window}`)
    }).pipe(
      Effect.catchAll((error) => Effect.asVoid(ledger.record(error, { route: "job:rate-count-purge" }))),
      Effect.withSpan("RateCounts.purgePast")
    )
    yield* purgePast.pipe(Effect.repeat(Schedule.spaced("1 minute")), Supervised.loop("rate-count-purge"), Effect.forkScoped)

    return { increment } as const
  })
