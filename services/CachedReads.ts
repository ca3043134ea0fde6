/**
 * Cache-aside reads (SPEC §3, §5). A hit is decoded with the value's schema; an entry that does not
 * decode is logged (key and a sanitised 200-character sample), deleted, and read again from the database, so
 * corruption is neither a 500 nor a silent miss. When the cache fails: with `BULWARK_CACHE_REQUIRED`
 * the request fails with 503 `CACHE_UNAVAILABLE`; without it the database serves, and the failure
 * is ledgered at severity `warning` (the breaker's own fast rejections are not ledgered one by one:
 * the transition that opened it was, and `/health` and the metrics say it is open).
 */
import { Context, Duration, Effect, Option, Schema } from "effect"
import { Database } from "../layers/database/Database.js"
import { Cache } from "../layers/cache/Cache.js"
import type { CacheUnavailable } from "../src/errors.js"
import { sanitizeSample } from "../src/telemetry/Sanitize.js"
import { ErrorLedger } from "./ErrorLedger.js"

export class CachePolicy extends Context.Tag("bulwark/CachePolicy")<CachePolicy, { readonly required: boolean }>() {}

/**
 * Stored for a key the database does not have, when the caller asks for misses to be cached. Not
 * JSON, so no value can be mistaken for it.
 */
const ABSENT = "#absent"

interface Codec {
  readonly decode: (text: string) => Option.Option<unknown>
  readonly encode: (value: unknown) => string
}

/** A schema's JSON codec: building `parseJson` codecs on every read cost more than the read. */
const makeCodecs = () => {
  const codecs = new WeakMap<Schema.Schema.All, Codec>()
  return <A, I>(schema: Schema.Schema<A, I>) => {
    let codec = codecs.get(schema)
    if (codec === undefined) {
      codec = {
        decode: Schema.decodeUnknownOption(Schema.parseJson(schema)),
        encode: Schema.encodeSync(Schema.parseJson(schema)) as (value: unknown) => string
      }
      codecs.set(schema, codec)
    }
    return codec as { readonly decode: (text: string) => Option.Option<A>; readonly encode: (value: A) => string }
  }
}

/** Shared-only entries kept in process, at most this many (the oldest go first). */
const MAX_LOCAL_ENTRIES = 10_000

export interface CachedReadsShape {
  /**
   * `load`'s value through the cache for `ttl`. `missTtl`: also cache that the database has no such
   * row, for this long (negative caching); the caller must `invalidate` the key when it creates the row.
   */
  readonly read: <A, I, E, R>(
    key: string,
    schema: Schema.Schema<A, I>,
    ttl: Duration.DurationInput,
    load: () => Effect.Effect<Option.Option<A>, E, R>,
    options?: { readonly missTtl?: Duration.DurationInput }
  ) => Effect.Effect<Option.Option<A>, E | CacheUnavailable, R>
  /** API keys: kept in this process only, until the change signal says keys may have changed. */
  readonly readUntilKeysChange: <A, E, R>(
    key: string,
    ttl: Duration.DurationInput,
    load: () => Effect.Effect<Option.Option<A>, E, R>
  ) => Effect.Effect<Option.Option<A>, E, R>
  /** After a write or delete; a failure is tolerated as reads tolerate it (the entry's TTL bounds staleness). */
  readonly invalidate: (key: string) => Effect.Effect<void, CacheUnavailable>
}

const make = Effect.gen(function*() {
  const cache = yield* Cache
  const ledger = yield* ErrorLedger
  const db = yield* Database
  const { required } = yield* CachePolicy
  // Compiled once per schema, and kept by this layer rather than the module.
  const codecOf = makeCodecs()
  /**
   * Values kept in this process with the change signal's mark at the time they were read: an entry
   * is used only while the mark stands (this process's own writes invalidate explicitly as well).
   * It serves API keys on every instance, and every read while the shared cache cannot serve.
   */
  const local = new Map<string, { readonly value: unknown; readonly version: number; readonly expiresAt: number }>()

  /**
   * The last text decoded for each key and what it decoded to. A hot key's entry is the same text
   * read after read, and decoding it (JSON, then the schema) cost more than the rest of the read;
   * equal text decodes to an equal value, so it is decoded once.
   */
  const decodedByKey = new Map<string, { readonly text: string; readonly value: Option.Option<unknown> }>()
  const decodeOnce = <A>(key: string, text: string, decode: (text: string) => Option.Option<A>): Option.Option<A> => {
    const last = decodedByKey.get(key)
    if (last !== undefined && last.text === text) return last.value as Option.Option<A>
    const value = decode(text)
    decodedByKey.delete(key)
    if (Option.isSome(value)) {
      decodedByKey.set(key, { text, value })
      if (decodedByKey.size > MAX_LOCAL_ENTRIES) decodedByKey.delete(decodedByKey.keys().next().value!)
    }
    return value
  }

  /** Required: the failure stands. Not required: recorded as degraded, and the caller goes on. */
  const tolerate = <A>(fallback: A) => (error: CacheUnavailable): Effect.Effect<A, CacheUnavailable> => {
    if (required) return Effect.fail(error)
    const record = error.reason === "breaker_open" ? Effect.void : Effect.asVoid(ledger.record(error, { severity: "warning" }))
    return Effect.as(record, fallback)
  }

  /**
   * `missTtl`: also cache that the database has no such row, for this long (negative caching);
   * the caller must `invalidate` the key when it creates the row.
   */
  const read = <A, I, E, R>(
    key: string,
    schema: Schema.Schema<A, I>,
    ttl: Duration.DurationInput,
    load: () => Effect.Effect<Option.Option<A>, E, R>,
    options: { readonly missTtl?: Duration.DurationInput } = {}
  ): Effect.Effect<Option.Option<A>, E | CacheUnavailable, R> => {
    const { decode, encode } = codecOf(schema)
    const { missTtl } = options
    const fromDatabase = Effect.tap(Effect.suspend(load), (loaded) => {
      if (Option.isSome(loaded)) return cache.set(key, encode(loaded.value), ttl).pipe(Effect.catchAll(tolerate(undefined)))
      return missTtl === undefined ? Effect.void : cache.set(key, ABSENT, missTtl).pipe(Effect.catchAll(tolerate(undefined)))
    })
    // The shared cache cannot serve (tolerated): this process's own copy, which is exactly as fresh
    // as the database, so that a dead Redis costs no more database reads than a live one.
    const degraded = (error: CacheUnavailable) => Effect.zipRight(tolerate(undefined)(error), untilChanged(db.changes.anything, key, ttl, load))
    const asked = Effect.matchEffect(cache.get(key), {
      onFailure: degraded,
      onSuccess: (hit) => {
        if (Option.isNone(hit)) return fromDatabase
        if (hit.value === ABSENT && missTtl !== undefined) return Effect.succeed(Option.none<A>())
        const decoded = decodeOnce(key, hit.value, decode)
        if (Option.isSome(decoded)) return Effect.succeed(decoded)
        return Effect.logWarning("a cached value did not decode; deleted and read from the database").pipe(
          Effect.annotateLogs({ key, sample: sanitizeSample(hit.value) }),
          Effect.zipRight(cache.delete(key).pipe(Effect.catchAll(tolerate(undefined)))),
          Effect.zipRight(fromDatabase)
        )
      }
    })
    if (required || cache.kind === "memory") return asked
    // While the shared cache's breaker rejects every call, the process's own copy serves without
    // asking it: the same answer as a rejection tolerated above, without building and catching one
    // per read (rejections are not ledgered either way; `/health` and the breaker report the outage).
    return Effect.clockWith((clock) => (cache.breaker.rejectsAt(clock.unsafeCurrentTimeMillis()) ? untilChanged(db.changes.anything, key, ttl, load) : asked))
  }

  /**
   * Served from `local` while `mark` gives the value the entry was read under, else read again.
   * While the mark cannot be told (`undefined`), nothing kept is used and nothing is kept: the
   * database answers (or fails) for itself.
   */
  const untilChanged = <A, E, R>(
    mark: (now: number) => number | undefined,
    key: string,
    ttl: Duration.DurationInput,
    load: () => Effect.Effect<Option.Option<A>, E, R>
  ): Effect.Effect<Option.Option<A>, E, R> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const version = mark(now)
      const entry = local.get(key)
      if (entry !== undefined && version !== undefined && entry.version === version && entry.expiresAt > now) {
        return Effect.succeed(Option.some(entry.value as A))
      }
      return Effect.tap(load(), (loaded) => {
        local.delete(key)
        if (Option.isNone(loaded) || version === undefined) return
        local.set(key, { value: loaded.value, version, expiresAt: now + Duration.toMillis(ttl) })
        if (local.size > MAX_LOCAL_ENTRIES) local.delete(local.keys().next().value!)
      })
    })

  /**
   * API keys: kept in this process only, until the change signal says keys may have changed (SPEC
   * §8: a revocation through any instance holds on every instance within 1 s). Never in the shared
   * cache: an entry there could be written back by a read that raced the revocation, or survive a
   * Redis that missed the revoking instance's delete, and then outlive the revocation until its TTL.
   */
  const readUntilKeysChange = <A, E, R>(
    key: string,
    ttl: Duration.DurationInput,
    load: () => Effect.Effect<Option.Option<A>, E, R>
  ): Effect.Effect<Option.Option<A>, E, R> => untilChanged(db.changes.keys, key, ttl, load)

  /** After a write or delete; a failure is tolerated as above (the entry's TTL bounds staleness). */
  const invalidate = (key: string): Effect.Effect<void, CacheUnavailable> =>
    Effect.zipRight(Effect.sync(() => local.delete(key)), cache.delete(key).pipe(Effect.catchAll(tolerate(undefined))))

  const service: CachedReadsShape = { read, readUntilKeysChange, invalidate }
  return service
})

export class CachedReads extends Effect.Service<CachedReads>()("bulwark/CachedReads", { effect: make }) {}
