/**
 * What `/health` reports (SPEC §4): each dependency probed through its breaker (so an open breaker
 * answers at once), with its breaker state and latency, and the ledger's recent and unresolved
 * counts, and the open event streams against their caps. Unhealthy when the database cannot serve;
 * degraded when only the cache or the memory store cannot (the rest of the API still serves).
 */
import { Clock, Effect, Either } from "effect"
import { Cache } from "../layers/cache/Cache.js"
import { Database } from "../layers/database/Database.js"
import { MemoryStore } from "../layers/memory/MemoryStore.js"
import type { BreakerStatus as BreakerState } from "../layers/resilience/CircuitBreaker.js"
import { BreakerStatus, DependencyHealth, HealthReport } from "../src/domain/Health.js"
import { type AppError, serverMessageOf } from "../src/errors.js"
import { sanitizeText } from "../src/telemetry/Sanitize.js"
import { CachePolicy } from "./CachedReads.js"
import { ErrorRecords } from "./ErrorLedger.js"
import { Events } from "./Events.js"

/** Errors in the last five minutes count as recent. */
const RECENT_MILLIS = 5 * 60 * 1000

export class Health extends Effect.Service<Health>()("bulwark/Health", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const cache = yield* Cache
    const memory = yield* MemoryStore
    const records = yield* ErrorRecords
    const cachePolicy = yield* CachePolicy
    const events = yield* Events
    const breakers = { database: db.breaker, cache: cache.breaker, memory: memory.breaker } as const

    const probe = <E extends AppError>(dependency: keyof typeof breakers, check: Effect.Effect<unknown, E>, kind?: string) =>
      Effect.gen(function*() {
        const breaker = breakers[dependency]
        const started = yield* Clock.currentTimeMillis
        const outcome = yield* Effect.either(check)
        const finished = yield* Clock.currentTimeMillis
        // "down" alone does not say why: the cause goes to the log (the failure itself was already
        // ledgered where the dependency's own call path records it).
        if (Either.isLeft(outcome)) {
          yield* Effect.logWarning(`health probe of the ${dependency} failed`).pipe(
            Effect.annotateLogs({ dependency, code: outcome.left.code, cause: sanitizeText(serverMessageOf(outcome.left)) })
          )
        }
        const state = yield* breaker.status
        return new DependencyHealth({
          status: Either.isRight(outcome) ? "ok" : "down",
          breaker: state.state,
          latency_ms: Either.isRight(outcome) ? finished - started : null,
          ...(kind === undefined ? {} : { kind })
        })
      })

    const report = Effect.fn("Health.report")(function*(detailed: boolean) {
      const [database, cacheHealth, memoryHealth] = yield* Effect.all([
        probe("database", db.read("health.database", db.sql`SELECT id FROM tenants LIMIT 1`)),
        probe("cache", cache.ping, cache.kind),
        probe("memory", memory.ping)
      ], { concurrency: 3 })
      const impaired = (dependency: DependencyHealth) => dependency.status === "down" || dependency.breaker !== "closed"
      const status = database.status === "down" ? "unhealthy" : impaired(cacheHealth) || impaired(memoryHealth) ? "degraded" : "ok"
      if (!detailed) return new HealthReport({ status })
      const now = yield* Clock.currentTimeMillis
      // The ledger lives in the database: when it cannot be read, the counts are null, not zero.
      const errors = yield* Effect.all([records.stats(new Date(now - RECENT_MILLIS)), records.stats(undefined)]).pipe(
        Effect.map(([recent, all]) => ({
          recent_count: recent.total,
          unresolved_count: all.unresolved_count,
          last_error: all.last_error
        })),
        Effect.catchAll((error) => Effect.as(Effect.logWarning("the error ledger could not be read for /health").pipe(Effect.annotateLogs({ code: error.code })), null))
      )
      const streams = yield* events.streamCounts
      return new HealthReport({
        status,
        dependencies: { database, cache: cacheHealth, memory: memoryHealth },
        errors,
        streams: { open: streams.open, per_key_cap: streams.perKeyCap, process_cap: streams.processCap }
      })
    })

    /**
     * Ready (SPEC §5): the database can serve (a table of our schema is read, so a database that
     * opens but cannot serve is not ready), and so can the cache when the deployment requires it.
     * Both go through their breakers, so an open one answers at once.
     */
    const ready = Effect.fn("Health.ready")(function*() {
      yield* db.read("health.ready", db.sql`SELECT id FROM tenants LIMIT 1`)
      if (cachePolicy.required) yield* cache.ping
    })

    const toStatus = (dependency: string, state: BreakerState) =>
      new BreakerStatus({
        dependency,
        state: state.state,
        retry_after_seconds: state.retryAfterSeconds,
        consecutive_failures: state.consecutiveFailures,
        window_calls: state.windowCalls,
        window_failures: state.windowFailures
      })

    const breakerStatuses = Effect.all(
      Object.entries(breakers).map(([dependency, breaker]) => Effect.map(breaker.status, (state) => toStatus(dependency, state)))
    )

    const setBreaker = Effect.fn("Health.setBreaker")(function*(dependency: keyof typeof breakers, action: "open" | "close" | "disable") {
      yield* breakers[dependency].force(action)
      yield* Effect.logWarning(`operator set the ${dependency} breaker: ${action}`).pipe(Effect.annotateLogs({ dependency, action }))
      return toStatus(dependency, yield* breakers[dependency].status)
    })

    return { report, ready, breakerStatuses, setBreaker } as const
  })
}) {}
