/**
 * The cache (SPEC §5, §8): a string key/value store with TTLs, in process by default and Redis when
 * `REDIS_URL` is set. Every Redis call has a short timeout and passes the cache's circuit breaker,
 * so a dead or stalled Redis costs one fast rejection per call once the breaker is open. Failures
 * are typed (`CacheUnavailable`); what to do about them (degrade or refuse) is the caller's rule.
 */
import { RedisClient } from "bun"
import { Context, Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Option, Ref, Schedule, type Scope } from "effect"
import { StartupError } from "../../src/Config.js"
import { CacheUnavailable } from "../../src/errors.js"
import * as CircuitBreaker from "../resilience/CircuitBreaker.js"
import * as Supervised from "../resilience/Supervised.js"
import { describeOverrun } from "../resilience/Timeout.js"

export interface CacheShape {
  readonly kind: "memory" | "redis"
  readonly get: (key: string) => Effect.Effect<Option.Option<string>, CacheUnavailable>
  readonly set: (key: string, value: string, ttl: Duration.DurationInput) => Effect.Effect<void, CacheUnavailable>
  readonly delete: (key: string) => Effect.Effect<void, CacheUnavailable>
  /** Adds one to a counter that expires `ttl` after its first increment; returns the new count. */
  readonly increment: (key: string, ttl: Duration.DurationInput) => Effect.Effect<number, CacheUnavailable>
  /** A round trip, for `/health`. */
  readonly ping: Effect.Effect<void, CacheUnavailable>
  /** Sends `message` to every process subscribed to `channel`; in process there are no others. */
  readonly publish: (channel: string, message: string) => Effect.Effect<void, CacheUnavailable>
  /**
   * Calls `onMessage` for each message on `channel` until the scope closes, over a connection of its
   * own that is re-established after a loss (messages sent meanwhile are not delivered: callers
   * must be able to catch up another way). In process it never calls.
   */
  readonly subscribe: (channel: string, onMessage: (message: string) => void) => Effect.Effect<void, never, Scope.Scope>
  readonly breaker: CircuitBreaker.CircuitBreaker<CacheUnavailable>
}

export class Cache extends Context.Tag("bulwark/Cache")<Cache, CacheShape>() {}

export interface CacheBreakerOptions {
  readonly breaker: Omit<CircuitBreaker.BreakerOptions<CacheUnavailable>, "dependency" | "isFailure" | "rejected" | "timedOut">
}

export const defaultCacheResilience: CacheBreakerOptions = {
  breaker: {
    consecutiveFailures: 3,
    failureRate: 0.5,
    slowCallRate: 0.8,
    slowCallDuration: "50 millis",
    windowSize: 20,
    minimumCalls: 10,
    openDuration: "5 seconds",
    maxOpenDuration: "60 seconds",
    halfOpenMaxProbes: 1,
    callTimeout: "100 millis"
  }
}

/** The reason of a command Redis answered with an error reply that says nothing of its health. */
const REFUSED = "redis_refused"

/** Error replies that do mean Redis cannot serve now (loading, busy, out of memory, read-only, ...). */
const UNWELL_REPLY = /^(LOADING|BUSY|OOM|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|MISCONF)\b/

const reasonOf = (cause: unknown): string => {
  const { code, message } = (cause ?? {}) as { readonly code?: unknown; readonly message?: unknown }
  return code === "ERR_REDIS_SERVER_ERROR" && typeof message === "string" && !UNWELL_REPLY.test(message) ? REFUSED : "redis_error"
}

const unavailable = (operation: string, reason: string, cause: unknown, retryAfterSeconds = 1) =>
  // Built on every rejected call while the breaker is open; its fields are ours, so not re-validated.
  new CacheUnavailable({ operation, reason, retryAfterSeconds, cause }, true)

/** An error's own message for a log line (an `UnknownException` from a promise carries its cause's). */
const causeText = (error: { readonly message: string; readonly cause?: unknown }): string =>
  error.cause instanceof Error ? error.cause.message : error.message

const BREAKER_OPEN = CircuitBreaker.breakerOpenCause("cache")

const makeBreaker = (options: CacheBreakerOptions) =>
  CircuitBreaker.make<CacheUnavailable>({
    ...options.breaker,
    dependency: "cache",
    // Redis refusing one command (a key of the wrong type) answered: only its other failures count.
    isFailure: (error) => error instanceof CacheUnavailable && error.reason !== REFUSED,
    rejected: (retryAfterSeconds) => unavailable("cache", "breaker_open", BREAKER_OPEN, retryAfterSeconds),
    timedOut: (overrun, operation) => unavailable(operation ?? "cache", "timeout", describeOverrun(overrun))
  })

/** In-process: a bounded map in insertion (least recently set or read) order, expiring by `Clock`. */
export const inProcess = (options: { readonly maxEntries: number } & CacheBreakerOptions = { maxEntries: 10_000, ...defaultCacheResilience }) =>
  Layer.effect(
    Cache,
    Effect.gen(function*() {
      const entries = new Map<string, { readonly value: string; readonly expiresAt: number }>()
      const breaker = yield* makeBreaker(options)
      // Each call reads the clock once and does its work in one step: these run on every request.
      /** The live entry, moved to the recent end; an expired one is dropped. */
      const lookup = (key: string, now: number) => {
        const entry = entries.get(key)
        if (entry === undefined) return undefined
        entries.delete(key)
        if (entry.expiresAt <= now) return undefined
        entries.set(key, entry)
        return entry
      }
      const store = (key: string, value: string, expiresAt: number) => {
        entries.delete(key)
        entries.set(key, { value, expiresAt })
        while (entries.size > options.maxEntries) {
          const oldest = entries.keys().next()
          if (oldest.done === true) break
          entries.delete(oldest.value)
        }
      }
      const get = (key: string) =>
        Effect.clockWith((clock) => {
          const entry = lookup(key, clock.unsafeCurrentTimeMillis())
          return Effect.succeed(entry === undefined ? Option.none<string>() : Option.some(entry.value))
        })
      const set = (key: string, value: string, ttl: Duration.DurationInput) =>
        Effect.clockWith((clock) => Effect.sync(() => store(key, value, clock.unsafeCurrentTimeMillis() + Duration.toMillis(ttl))))
      const remove = (key: string) => Effect.sync(() => void entries.delete(key))
      const increment = (key: string, ttl: Duration.DurationInput) =>
        Effect.clockWith((clock) =>
          Effect.sync(() => {
            const now = clock.unsafeCurrentTimeMillis()
            const current = lookup(key, now)
            const count = current === undefined ? 1 : Number(current.value) + 1
            // Keep the first expiry: a counter's window does not slide with each hit.
            store(key, String(count), current === undefined ? now + Duration.toMillis(ttl) : current.expiresAt)
            return count
          })
        )
      return Cache.of({
        kind: "memory",
        get,
        set,
        delete: remove,
        increment,
        ping: Effect.void,
        publish: () => Effect.void,
        subscribe: () => Effect.void,
        breaker
      })
    })
  )

/**
 * Redis through Bun's built-in client: no offline queue, so a command on a dead Redis fails at once.
 * A Redis that is down at start is one that went down later (SPEC §5): the server starts, the
 * client keeps reconnecting, and meanwhile each call fails (`CACHE_UNAVAILABLE`) and the breaker
 * opens; whether requests degrade or are refused, and whether the process is ready, is the callers'
 * rule (`BULWARK_CACHE_REQUIRED`). A URL the client cannot parse is configuration and stops the start.
 */
export const redis = (url: string, options: CacheBreakerOptions = defaultCacheResilience) =>
  Layer.scoped(
    Cache,
    Effect.gen(function*() {
      const client = yield* Effect.acquireRelease(
        Effect.try({
          try: () =>
            new RedisClient(url, {
              connectionTimeout: 500,
              autoReconnect: true,
              maxRetries: 1_000_000,
              enableOfflineQueue: false,
              enableAutoPipelining: true
            }),
          // The client's own words, never the URL: it may carry a password.
          catch: (cause) => new StartupError("REDIS_URL", `not a Redis URL the client accepts (${cause instanceof Error ? cause.message : String(cause)})`)
        }),
        (client) => Effect.sync(() => client.close())
      )
      // Connecting goes on in the background until it holds: the client retries a refused connection
      // by itself, but a first attempt that was accepted and then closed ends its promise, so that
      // is asked again. The first second is waited for, so that a Redis that is up serves the first
      // request.
      const connecting = yield* Effect.forkScoped(
        Effect.tryPromise(() => client.connect()).pipe(Effect.retry(Schedule.spaced("250 millis")))
      )
      const first = yield* Effect.either(Effect.timeout(Fiber.join(connecting), "1 second"))
      if (Either.isLeft(first)) {
        const annotated = Effect.annotateLogs({ dependency: "cache" })
        yield* Effect.logWarning("Redis is not reachable at start; the cache is unavailable until it is (reconnecting in the background)").pipe(
          Effect.annotateLogs({ reason: causeText(first.left) }),
          annotated
        )
        yield* Fiber.join(connecting).pipe(
          Effect.zipRight(Effect.logInfo("Redis is reachable; the cache breaker closes on its next probe")),
          annotated,
          Effect.forkScoped
        )
      }
      const breaker = yield* makeBreaker(options)
      const command = <A>(operation: string, run: () => Promise<A>) =>
        // The span is for calls that reach Redis; a call the open breaker refuses never did (and,
        // built only when admitted, costs nothing while Redis is down).
        breaker.run(
          Effect.suspend(() =>
            Effect.tryPromise({ try: run, catch: (cause) => unavailable(operation, reasonOf(cause), cause) }).pipe(
              Effect.withSpan(`cache.${operation}`, { attributes: { "db.system.name": "redis" } })
            )
          ),
          operation
        )
      return Cache.of({
        kind: "redis",
        get: (key) => Effect.map(command("get", () => client.get(key)), Option.fromNullable),
        set: (key, value, ttl) =>
          Effect.asVoid(command("set", () => client.set(key, value, "PX", Math.max(1, Math.round(Duration.toMillis(ttl)))))),
        delete: (key) => Effect.asVoid(command("del", () => client.del(key))),
        increment: (key, ttl) =>
          command("incr", async () => {
            const count = await client.incr(key)
            if (count === 1) await client.pexpire(key, Math.max(1, Math.round(Duration.toMillis(ttl))))
            return count
          }),
        ping: Effect.asVoid(command("ping", () => client.send("PING", []))),
        publish: (channel, message) => Effect.asVoid(command("publish", () => client.publish(channel, message))),
        subscribe: (channel, onMessage) => subscribeLoop(url, channel, onMessage),
        breaker
      })
    })
  )

/**
 * One subscription connection at a time: connect, subscribe, wait for the connection to close,
 * repeat every second. A failure to subscribe and the loss of a working subscription are each
 * logged once, when they begin, not on every retry.
 */
const subscribeLoop = (url: string, channel: string, onMessage: (message: string) => void) =>
  Effect.gen(function*() {
    const state = yield* Ref.make<"starting" | "subscribed" | "failing">("starting")
    const annotated = Effect.annotateLogs({ dependency: "cache", channel })
    const once = Effect.scoped(
      Effect.gen(function*() {
        const client = yield* Effect.acquireRelease(
          Effect.sync(() => new RedisClient(url, { connectionTimeout: 500, autoReconnect: false, enableOfflineQueue: false })),
          (client) => Effect.sync(() => client.close())
        )
        const closed = yield* Deferred.make<void>()
        client.onclose = () => Deferred.unsafeDone(closed, Exit.void)
        yield* Effect.tryPromise(() => client.connect())
        yield* Effect.tryPromise(() => client.subscribe(channel, (message) => onMessage(message)))
        yield* Ref.set(state, "subscribed")
        yield* Effect.logInfo(`subscribed to ${channel}`).pipe(annotated)
        yield* Deferred.await(closed)
      })
    ).pipe(
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.flatMap(Ref.getAndSet(state, "failing"), (was) =>
            was === "failing"
              ? Effect.void
              : Effect.logWarning(`cannot subscribe to ${channel}; retrying every second`).pipe(
                Effect.annotateLogs({ reason: error.cause instanceof Error ? error.cause.message : String(error.cause) }),
                annotated
              )),
        onSuccess: () =>
          Effect.flatMap(Ref.getAndSet(state, "starting"), (was) =>
            was === "subscribed" ? Effect.logWarning(`lost the subscription to ${channel}; reconnecting`).pipe(annotated) : Effect.void)
      })
    )
    yield* once.pipe(Effect.repeat(Schedule.spaced("1 second")), Supervised.loop(`subscription:${channel}`), Effect.forkScoped)
  })
