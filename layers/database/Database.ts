/**
 * The one door to the database. Every repository call goes through `read` or `write`, which name the
 * operation (for spans and errors) and translates driver errors; it is also the seam where the
 * resilience policies (timeout, breaker, retry, bulkhead) wrap each call.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Context, type Duration, Effect, Either, FiberRef, Layer, Option, ParseResult, Schema } from "effect"
import { globalValue } from "effect/GlobalValue"
import { StartupError, type DatabaseUrl } from "../../src/Config.js"
import { type Conflict, DbOperational, Overloaded } from "../../src/errors.js"
import * as Bulkhead from "../resilience/Bulkhead.js"
import * as CircuitBreaker from "../resilience/CircuitBreaker.js"
import { describeOverrun } from "../resilience/Timeout.js"
import { makeBudget, retrying, type RetryBudgetOptions } from "../resilience/Retry.js"
import { translateSqlError, type TranslateOptions } from "./errors.js"
import * as Migrations from "./Migrations.js"
import * as Postgres from "./postgres/Postgres.js"
import * as Sqlite from "./sqlite/Sqlite.js"

export type CallKind = "read" | "write"

export interface DatabaseResilience {
  readonly breaker: Omit<CircuitBreaker.BreakerOptions<DbOperational>, "dependency" | "isFailure" | "rejected" | "timedOut">
  readonly retry: { readonly baseDelay: Duration.DurationInput; readonly maxRetries: number; readonly maxElapsed: Duration.DurationInput }
  readonly budget: RetryBudgetOptions
  readonly writes: { readonly maxConcurrent: number; readonly maxQueued: number }
}

export const defaultResilience: DatabaseResilience = {
  breaker: {
    consecutiveFailures: 5,
    failureRate: 0.5,
    slowCallRate: 0.8,
    slowCallDuration: "1 second",
    windowSize: 20,
    minimumCalls: 10,
    openDuration: "5 seconds",
    maxOpenDuration: "60 seconds",
    halfOpenMaxProbes: 2,
    callTimeout: "2 seconds"
  },
  retry: { baseDelay: "10 millis", maxRetries: 3, maxElapsed: "500 millis" },
  budget: { ratio: 0.2, window: "10 seconds", minRetries: 3 },
  writes: { maxConcurrent: 16, maxQueued: 256 }
}

export interface DatabaseShape {
  readonly sql: SqlClient.SqlClient
  readonly read: <A, R>(operation: string, effect: Effect.Effect<A, SqlError, R>) => Effect.Effect<A, DbOperational, R>
  /** Writes also pass the bulkhead, so they can be refused with `Overloaded`. */
  readonly write: <A, R>(operation: string, effect: Effect.Effect<A, SqlError, R>) => Effect.Effect<A, DbOperational | Overloaded, R>
  /** A write whose unique constraint the caller expects to fail sometimes: that becomes `Conflict`. */
  readonly insertUnique: <A, R>(
    operation: string,
    effect: Effect.Effect<A, SqlError, R>,
    conflict: Required<TranslateOptions>
  ) => Effect.Effect<A, Conflict | DbOperational | Overloaded, R>
  /** Runs `effect` in one transaction, retried as one unit; the calls inside are not retried alone. */
  readonly transaction: <A, E, R>(
    operation: string,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | DbOperational | Overloaded, R>
  readonly breaker: CircuitBreaker.CircuitBreaker<DbOperational>
  /** Statements run synchronously on the event loop (SQLite), not over a socket (PostgreSQL). */
  readonly runsOnTheLoop: boolean
  /**
   * A number that changes whenever the database is committed to by another process (the CLI,
   * another instance), and also by this one (SQLite's `PRAGMA data_version`, read on a connection
   * of its own). It lets this process keep what it read until someone else may have written;
   * this process's own writes invalidate what they change explicitly as well. Unguarded, cheap
   * and synchronous (it is read inside other steps); a failure only means "cannot tell".
   */
  readonly changedElsewhere: () => Either.Either<number, SqlError>
}

/** Set inside a transaction: its statements run bare, the transaction as a whole is guarded. */
const insideTransaction = globalValue("bulwark/Database/insideTransaction", () => FiberRef.unsafeMake(false))

/** What a dependency served from SQL fails with: `DbOperational` for the database, its own for others. */
export interface UnavailableFields {
  readonly operation: string
  readonly reason: string
  readonly transient: boolean
  readonly retryAfterSeconds: number
  readonly cause: unknown
}

export interface GuardOptions<E extends { readonly transient: boolean }> {
  readonly dependency: string
  readonly resilience: DatabaseResilience
  /** Only this dependency's own errors move its breaker or are retried. */
  readonly isUnavailable: (error: unknown) => error is E
  readonly unavailable: (fields: UnavailableFields) => E
  /** See `BreakerOptions.runsOnTheLoop`. */
  readonly runsOnTheLoop: boolean
}

/**
 * The policies around one SQL-backed dependency (SPEC §5): its breaker, its retry with a budget,
 * and a bulkhead for writes. The database has one; the memory store, which lives in the same
 * database today, has its own, so that each reports and trips on its own.
 */
export const makeGuards = <E extends { readonly transient: boolean }>(options: GuardOptions<E>) =>
  Effect.gen(function*() {
    const { dependency, resilience, unavailable } = options
    const breaker = yield* CircuitBreaker.make<E>({
      ...resilience.breaker,
      dependency,
      runsOnTheLoop: options.runsOnTheLoop,
      isFailure: options.isUnavailable,
      rejected: (retryAfterSeconds) =>
        unavailable({ operation: dependency, reason: "breaker_open", transient: false, retryAfterSeconds, cause: CircuitBreaker.breakerOpenCause(dependency) }),
      timedOut: (overrun, operation) =>
        unavailable({ operation: operation ?? dependency, reason: "timeout", transient: true, retryAfterSeconds: 1, cause: describeOverrun(overrun) })
    })
    const retry = retrying({
      dependency,
      isTransient: (error) => options.isUnavailable(error) && error.transient,
      ...resilience.retry,
      budget: yield* makeBudget(resilience.budget)
    })
    const writes = yield* Bulkhead.make<Overloaded>({
      ...resilience.writes,
      full: () => new Overloaded({ resource: `${dependency} writes`, retryAfterSeconds: 1 })
    })
    return { breaker, retry, writes } as const
  })

const isDbOperational = (error: unknown): error is DbOperational => error instanceof DbOperational

export class Database extends Context.Tag("bulwark/Database")<Database, DatabaseShape>() {
  static readonly make = (resilience: DatabaseResilience = defaultResilience, runsOnTheLoop = true) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const changedElsewhere = yield* Sqlite.DataVersion
      const { breaker, retry, writes } = yield* makeGuards<DbOperational>({
        dependency: "database",
        resilience,
        runsOnTheLoop,
        isUnavailable: isDbOperational,
        unavailable: (fields) => new DbOperational(fields)
      })

      const span = (operation: string, kind: CallKind) =>
        Effect.withSpan(`db.${operation}`, { attributes: { "db.operation.name": operation, "bulwark.db.kind": kind } })

      /** Outermost first: retry (with budget) → breaker → per-attempt timeout → bulkhead. */
      const guardedWrite = <A, E, R>(attempt: Effect.Effect<A, E, R>) =>
        Effect.flatMap(FiberRef.get(insideTransaction), (inside): Effect.Effect<A, E | DbOperational | Overloaded, R> =>
          inside ? attempt : retry(breaker.run(writes.run(attempt))))

      const read: DatabaseShape["read"] = (operation, effect) =>
        Effect.flatMap(FiberRef.get(insideTransaction), (inside) => {
          const attempt = Effect.catchTag(effect, "SqlError", translateSqlError(operation))
          return inside ? attempt : retry(breaker.run(attempt))
        }).pipe(span(operation, "read"))
      const write: DatabaseShape["write"] = (operation, effect) =>
        guardedWrite(Effect.catchTag(effect, "SqlError", translateSqlError(operation))).pipe(span(operation, "write"))
      const insertUnique: DatabaseShape["insertUnique"] = (operation, effect, conflict) =>
        guardedWrite(Effect.catchTag(effect, "SqlError", translateSqlError(operation, conflict))).pipe(span(operation, "write"))
      const transaction: DatabaseShape["transaction"] = (operation, effect) =>
        guardedWrite(
          sql.withTransaction(Effect.locally(effect, insideTransaction, true)).pipe(
            // `withTransaction` runs COMMIT and ROLLBACK under `orDie`: a serialization failure or a
            // deferred constraint at COMMIT, or a connection lost mid-transaction, is the database's
            // answer, not a bug, so it is failed with and translated like any other.
            Effect.catchSomeDefect((defect) => defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()),
            Effect.catchIf((error): error is SqlError => error instanceof SqlError, translateSqlError(operation))
          )
        ).pipe(span(operation, "write"))
      return Database.of({ sql, read, write, insertUnique, transaction, breaker, runsOnTheLoop, changedElsewhere })
    })
}

/** Rows come from our own schema; one that does not decode is corrupt data or a bug, never a miss. */
export const decodeRow = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(schema)
  return (row: unknown): Effect.Effect<A> =>
    decode(row).pipe(
      Effect.catchTag("ParseError", (error) =>
        Effect.dieMessage(`a database row did not decode: ${ParseResult.TreeFormatter.formatErrorSync(error)}`))
    )
}

export interface DatabaseOptions {
  readonly url: DatabaseUrl
  readonly sqliteBusyTimeoutMillis: number
  readonly resilience?: DatabaseResilience
  /** How long a PostgreSQL start keeps trying to reach the server (SPEC §5). */
  readonly connectRetryFor?: Duration.DurationInput
}

/** Until a change signal exists for PostgreSQL, every read counts as changed: never trust in-process copies. */
const alwaysChanged = (): Sqlite.DataVersionShape => {
  let version = 0
  return () => Either.right(++version)
}

export const clientLayer = (
  options: DatabaseOptions
): Layer.Layer<SqlClient.SqlClient | Sqlite.DataVersion, StartupError> => {
  switch (options.url._tag) {
    case "SqliteFile":
      return Sqlite.layer({ filename: options.url.filename, busyTimeoutMillis: options.sqliteBusyTimeoutMillis })
    case "SqliteMemory":
      return Sqlite.layer({ filename: ":memory:", busyTimeoutMillis: options.sqliteBusyTimeoutMillis })
    case "Postgres":
      return Layer.merge(
        Postgres.layer({
          url: options.url.url,
          poolSize: options.url.poolSize,
          ...(options.connectRetryFor === undefined ? {} : { connectRetryFor: options.connectRetryFor })
        }),
        Layer.sync(Sqlite.DataVersion, alwaysChanged)
      )
  }
}

/**
 * The share of the PostgreSQL pool a dependency's writes may hold at once, so that writes queue in
 * the bulkhead (and are refused with `OVERLOADED` past it) instead of in the driver, and reads
 * always find a connection. The database takes three quarters, the memory store the rest.
 */
export const sizedToPool = (resilience: DatabaseResilience, url: DatabaseUrl, share: "database" | "memory"): DatabaseResilience => {
  if (url._tag !== "Postgres") return resilience
  const memory = Math.max(1, Math.floor(url.poolSize / 4))
  const writers = share === "memory" ? memory : Math.max(1, url.poolSize - memory)
  return { ...resilience, writes: { ...resilience.writes, maxConcurrent: Math.min(resilience.writes.maxConcurrent, writers) } }
}

const migrated = Layer.effectDiscard(
  Migrations.run.pipe(
    Effect.mapError((error) => new StartupError("DATABASE_URL", `migrations failed: ${error.message}`))
  )
)

/** The database for the whole process: client, migrations applied, the `Database` door. */
export const layer = (options: DatabaseOptions) =>
  Layer.merge(
    Layer.effect(
      Database,
      Database.make(sizedToPool(options.resilience ?? defaultResilience, options.url, "database"), options.url._tag !== "Postgres")
    ),
    migrated
  ).pipe(Layer.provideMerge(clientLayer(options)))
