/**
 * Rate limits (SPEC §1, §4, §8): a fixed window per bucket (an API key, or an IP when
 * unauthenticated), counted where every instance counts: in the cache when it is Redis; in the
 * database (leased, `RateCounts.ts`) when instances share a server database without Redis; else in
 * process (SQLite serves one process). When Redis cannot count: with the cache required the request
 * fails 503; otherwise it is counted in process (limits never switch off), ledgered at warning and
 * counted in `bulwark_rate_limit_fallbacks_total`. When the database cannot count, the request fails
 * with its 503, as it would at its next database call.
 */
import { Context, Effect, Layer, Metric } from "effect"
import { Cache } from "../layers/cache/Cache.js"
import type { RateLimit } from "../src/Config.js"
import { type CacheUnavailable, type DbOperational, RateLimited } from "../src/errors.js"
import { currentRequest, type RateLimitHeaders } from "../src/http/InFlight.js"
import { rateLimitFallbacksTotal } from "../src/telemetry/Metrics.js"
import { CachePolicy } from "./CachedReads.js"
import { ErrorLedger } from "./ErrorLedger.js"
import { makeLeasedCounter } from "./RateCounts.js"

export class RateLimitConfig extends Context.Tag("bulwark/RateLimitConfig")<RateLimitConfig, RateLimit>() {}

/** Where counts are kept: the cache (in process, or Redis when set), or the shared database. */
export class RateLimitStore extends Context.Tag("bulwark/RateLimitStore")<RateLimitStore, "cache" | "database">() {}

const make = Effect.gen(function*() {
  const cache = yield* Cache
  const ledger = yield* ErrorLedger
  const { required } = yield* CachePolicy
  const { limit, windowMillis } = yield* RateLimitConfig
  const inDatabase = (yield* RateLimitStore) === "database" ? yield* makeLeasedCounter({ limit, windowMillis }) : undefined
  // Counts made here when the shared store fails; entries expire with their window.
  const local = new Map<string, { count: number; expiresAt: number }>()

  const countLocally = (key: string, now: number) => {
    const entry = local.get(key)
    const next = entry === undefined || entry.expiresAt <= now ? { count: 1, expiresAt: now + windowMillis } : { ...entry, count: entry.count + 1 }
    local.set(key, next)
    if (local.size > 100_000) for (const [k, v] of local) if (v.expiresAt <= now) local.delete(k)
    return next.count
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

  /** The window's count as `RateLimit-*` headers for the edge, and the verdict. */
  const settle = (count: number, now: number, window: number) =>
    Effect.flatMap(currentRequest, (request) => {
      const reset = Math.max(1, Math.ceil(((window + 1) * windowMillis - now) / 1000))
      const headers: RateLimitHeaders = { limit, remaining: Math.max(0, limit - count), reset }
      if (request !== undefined) request.rateLimit = headers
      return count > limit ? Effect.fail(new RateLimited({ retryAfterSeconds: reset })) : Effect.void
    })

  /** Counts one request against `bucket`; fails `RateLimited` past the limit. */
  // Every request passes here: not a span of its own, and as few steps as it can be; a shared
  // counter's Redis call has its span.
  const hit = (bucket: string): Effect.Effect<void, RateLimited | CacheUnavailable | DbOperational> =>
    Effect.clockWith((clock): Effect.Effect<void, RateLimited | CacheUnavailable | DbOperational> => {
      const now = clock.unsafeCurrentTimeMillis()
      const window = Math.floor(now / windowMillis)
      if (inDatabase !== undefined) return Effect.flatMap(inDatabase.increment(bucket, window), (count) => settle(count, now, window))
      const key = `ratelimit:${bucket}:${window}`
      // The shared store's breaker rejects every call: count here at once, as a rejection would.
      if (!required && cache.breaker.rejectsAt(now)) return Effect.flatMap(countHere(key, now), (count) => settle(count, now, window))
      return Effect.flatMap(Effect.catchAll(cache.increment(key, windowMillis), fallBack(key, now)), (count) => settle(count, now, window))
    })

  return { hit } as const
})

export class RateLimiter extends Context.Tag("bulwark/RateLimiter")<RateLimiter, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(RateLimiter, make)
}
