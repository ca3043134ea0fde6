/** The rate limiter's decisions under TestClock: a bucket past its limit is known spent until its window ends, and no longer. */
import { expect, test } from "bun:test"
import { Effect, Layer, TestClock, TestContext } from "effect"
import * as Cache from "../../layers/cache/Cache.js"
import * as Database from "../../layers/database/Database.js"
import * as LoopDelay from "../../layers/resilience/LoopDelay.js"
import { CachePolicy } from "../../services/CachedReads.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { RateLimitConfig, RateLimiter, RateLimitStore } from "../../services/RateLimiter.js"

// Counted in process: the ledger is only for a shared store's failures, and the database only for
// counts kept there, neither of which happens here.
const unusedLedger = Layer.succeed(ErrorLedger, { record: () => Effect.dieMessage("nothing is ledgered here") } as never)
const unusedDatabase = Layer.succeed(Database.Database, {} as never)

const withLimiter = <A, E>(program: Effect.Effect<A, E, RateLimiter>) =>
  Effect.runPromise(
    program.pipe(
      Effect.provide(
        RateLimiter.Default.pipe(
          Layer.provide(Layer.mergeAll(
            Cache.inProcess(),
            unusedLedger,
            unusedDatabase,
            Layer.succeed(CachePolicy, { required: false }),
            Layer.succeed(RateLimitConfig, { limit: 2, windowMillis: 10_000 }),
            Layer.succeed(RateLimitStore, "cache")
          )),
          Layer.provide(Layer.succeed(LoopDelay.LoopDelay, LoopDelay.unmeasured))
        )
      ),
      Effect.provide(TestContext.TestContext),
      Effect.scoped
    )
  )

test("each count is a decision; past the limit the bucket is known spent, without counting, until its window ends", () =>
  withLimiter(Effect.gen(function*() {
    const limiter = yield* RateLimiter
    yield* TestClock.adjust("2 seconds")
    expect(yield* limiter.hit("ip:a")).toEqual({ allowed: true, limit: 2, remaining: 1, reset: 8 })
    expect(yield* limiter.knownSpent("ip:a")).toBeUndefined()
    expect(yield* limiter.hit("ip:a")).toEqual({ allowed: true, limit: 2, remaining: 0, reset: 8 })
    expect(yield* limiter.hit("ip:a")).toEqual({ allowed: false, limit: 2, remaining: 0, reset: 8 })

    // Known here without counting again; another bucket is not.
    yield* TestClock.adjust("7500 millis")
    expect(yield* limiter.knownSpent("ip:a")).toEqual({ allowed: false, limit: 2, remaining: 0, reset: 1 })
    expect(yield* limiter.knownSpent("ip:b")).toBeUndefined()

    // The window ends: nothing is known spent, and the bucket counts from one again.
    yield* TestClock.adjust("500 millis")
    expect(yield* limiter.knownSpent("ip:a")).toBeUndefined()
    expect(yield* limiter.hit("ip:a")).toEqual({ allowed: true, limit: 2, remaining: 1, reset: 10 })
  })))

test("a flood of buckets in one window (as many client addresses) is bounded: the oldest are forgotten, the newest still count", () =>
  withLimiter(Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const bound = 100_000
    for (let i = 0; i <= bound; i++) yield* limiter.hit(`ip:flood-${i}`)
    // Past the bound the oldest tenth went: the first bucket counts from one again...
    expect((yield* limiter.hit("ip:flood-0")).remaining).toBe(1)
    // ...while one counted just before is still counted.
    expect((yield* limiter.hit(`ip:flood-${bound}`)).remaining).toBe(0)
  })))
