/**
 * Rate limits (SPEC §1, §4, §8): a fixed window per bucket (an API key, or a client address),
 * counted where every instance counts: in the cache when it is Redis; in the database (leased,
 * `RateCounts.ts`) when instances share a server database without Redis; else in process (SQLite
 * serves one process). When Redis cannot count: with the cache required the request fails 503;
 * otherwise it is counted in process (limits never switch off), ledgered at warning and counted in
 * `bulwark_rate_limit_fallbacks_total`. When the database cannot count, the request fails with its
 * 503, as it would at its next database call.
 *
 * The limiter decides; it does not answer. Each count comes back as a `RateLimitDecision`, which
 * the HTTP edge turns into `RateLimit-*` headers and, when not allowed, a 429.
 */
import { Clock, Context, Effect, Metric } from "effect"
import { Cache } from "../layers/cache/Cache.js"
import type { RateLimit } from "../src/Config.js"
import type { CacheUnavailable, DbOperational } from "../src/errors.js"
import { rateLimitFallbacksTotal } from "../src/telemetry/Metrics.js"
import { CachePolicy } from "./CachedReads.js"
import { ErrorLedger } from "./ErrorLedger.js"
import { makeLeasedCounter } from "./RateCounts.js"

export class RateLimitConfig extends Context.Tag("bulwark/RateLimitConfig")<RateLimitConfig, RateLimit>() {}

/** Where counts are kept: the cache (in process, or Redis when set), or the shared database. */
export class RateLimitStore extends Context.Tag("bulwark/RateLimitStore")<RateLimitStore, "cache" | "database">() {}

/** A bucket's window once one more request is counted in it. */
export interface RateLimitDecision {
  /** False once the window's count is past the limit. */
  readonly allowed: boolean
  readonly limit: number
  readonly remaining: number
  /** Seconds until the window ends (at least 1): when a refused request may try again. */
  readonly reset: number
}

export interface RateLimiterShape {
  /** Counts one request against `bucket` and says whether it is within the limit. */
  readonly hit: (bucket: string) => Effect.Effect<RateLimitDecision, CacheUnavailable | DbOperational>
  /**
   * The refusal of `bucket` for the rest of its window when a count made by this process took it
   * past its limit in the current window, without counting; `undefined` when none did. It asks no
   * store: what other instances counted is learnt here at this process's next count of the bucket.
   */
  readonly knownSpent: (bucket: string) => Effect.Effect<RateLimitDecision | undefined>
}

/** Past this many remembered buckets, those whose window is over are forgotten. */
const MAX_BUCKETS = 100_000

export class RateLimiter extends Effect.Service<RateLimiter>()("bulwark/RateLimiter", {
  scoped: Effect.gen(function*() {
    const cache = yield* Cache
    const ledger = yield* ErrorLedger
    const { required } = yield* CachePolicy
    const { limit, windowMillis } = yield* RateLimitConfig
    const inDatabase = (yield* RateLimitStore) === "database" ? yield* makeLeasedCounter({ limit, windowMillis }) : undefined
    // Counts made here: all of them with the in-process cache, else those made when the shared
    // store fails; entries expire with their window.
    const local = new Map<string, { count: number; expiresAt: number }>()
    // Buckets a count took past the limit, with the end of that window.
    const spent = new Map<string, number>()

    const countLocally = (key: string, now: number) => {
      const entry = local.get(key)
      const next = entry === undefined || entry.expiresAt <= now ? { count: 1, expiresAt: now + windowMillis } : { ...entry, count: entry.count + 1 }
      local.set(key, next)
      if (local.size > MAX_BUCKETS) forgetBuckets(now)
      return next.count
    }

    /**
     * Past the bound: the buckets whose window is over go, then the oldest others (a map keeps its
     * insertion order) down to nine tenths of it, so that a flood of live buckets (as many client
     * addresses in one window) sweeps once in many counts rather than at every new one.
     */
    const forgetBuckets = (now: number) => {
      for (const [k, v] of local) if (v.expiresAt <= now) local.delete(k)
      for (const k of local.keys()) {
        if (local.size <= MAX_BUCKETS * 0.9) break
        local.delete(k)
      }
    }

    /** Counted in process instead of in the shared store: each such count is a fallback. */
    const countHere = (key: string, now: number) =>
      Effect.zipRight(Metric.increment(rateLimitFallbacksTotal), Effect.sync(() => countLocally(key, now)))

    // The breaker's fast rejections are not ledgered one by one (the transition that opened it was).
    const fallBack = (key: string, now: number) => (error: CacheUnavailable) =>
      required
        ? Effect.fail(error)
        : error.reason === "breaker_open"
        ? countHere(key, now)
        : Effect.zipRight(ledger.record(error, { severity: "warning" }), countHere(key, now))

    const decide = (bucket: string, count: number, now: number, window: number): RateLimitDecision => {
      const endsAt = (window + 1) * windowMillis
      const allowed = count <= limit
      if (!allowed) {
        if (spent.size > MAX_BUCKETS) for (const [k, until] of spent) if (until <= now) spent.delete(k)
        spent.set(bucket, endsAt)
      }
      return { allowed, limit, remaining: Math.max(0, limit - count), reset: Math.max(1, Math.ceil((endsAt - now) / 1000)) }
    }

    // Every request passes here: not a span of its own, and as few steps as it can be; a shared
    // counter's Redis call has its span.
    const hit = (bucket: string): Effect.Effect<RateLimitDecision, CacheUnavailable | DbOperational> =>
      Effect.clockWith((clock): Effect.Effect<RateLimitDecision, CacheUnavailable | DbOperational> => {
        const now = clock.unsafeCurrentTimeMillis()
        const window = Math.floor(now / windowMillis)
        const decided = (count: number) => decide(bucket, count, now, window)
        if (inDatabase !== undefined) return Effect.map(inDatabase.increment(bucket, window), decided)
        const key = `ratelimit:${bucket}:${window}`
        // With the in-process cache there is no shared store: the count is this process's own, kept
        // here in one step (the cache's own counter would be the same map behind three more effects).
        if (cache.kind === "memory") return Effect.succeed(decided(countLocally(key, now)))
        // The shared store's breaker rejects every call: count here at once, as a rejection would.
        if (!required && cache.breaker.rejectsAt(now)) return Effect.map(countHere(key, now), decided)
        return Effect.map(Effect.catchAll(cache.increment(key, windowMillis), fallBack(key, now)), decided)
      })

    const knownSpent = (bucket: string): Effect.Effect<RateLimitDecision | undefined> =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const until = spent.get(bucket)
        if (until === undefined) return undefined
        if (until <= now) {
          spent.delete(bucket)
          return undefined
        }
        return { allowed: false, limit, remaining: 0, reset: Math.max(1, Math.ceil((until - now) / 1000)) }
      })

    const service: RateLimiterShape = { hit, knownSpent }
    return service
  })
}) {}
