/**
 * The one door to the database. Every repository call goes through `read` or `write`, which name the
 * operation (for spans and errors) and translates driver errors; it is also the seam where the
 * resilience policies (timeout, breaker, retry, bulkhead) wrap each call.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Context, type Duration, Effect, FiberRef, Layer, Option, ParseResult, Schema } from "effect"
import { globalValue } from "effect/GlobalValue"
import { StartupError, type DatabaseUrl } from "../../src/Config.js"
import { type Conflict, DbOperational, Overloaded } from "../../src/errors.js"
import * as Bulkhead from "../resilience/Bulkhead.js"
import * as CircuitBreaker from "../resilience/CircuitBreaker.js"
import { describeOverrun } from "../resilience/Timeout.js"
import { makeBudget, retrying, type RetryBudgetOptions } from "../resilience/Retry.js"
import * as ChangeSignal from "./ChangeSignal.js"
import { translateSqlError, type TranslateOptions } from "./errors.js"
import * as Migrations from "./Migrations.js"
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
  /** Whether what this process kept in memory may have changed since it was read (see `ChangeSignal`). */
  readonly changes: ChangeSignal.ChangeSignalShape
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
      const changes = yield* ChangeSignal.ChangeSignal
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
      return Database.of({ sql, read, write, insertUnique, transaction, breaker, runsOnTheLoop, changes })
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

/**
 * How long SQLite itself waits on a lock. Short on purpose: bun:sqlite blocks the event loop while
 * it waits, so longer waits are left to the retry policy, which waits without blocking.
 */
export const SQLITE_BUSY_TIMEOUT_MILLIS = 25

export interface DatabaseOptions {
  readonly url: DatabaseUrl
  readonly sqliteBusyTimeoutMillis: number
  readonly resilience?: DatabaseResilience
  /** How long a PostgreSQL start keeps trying to reach the server (SPEC §5). */
  readonly connectRetryFor?: Duration.DurationInput
  /**
   * Whether this process keeps copies that must follow other processes' changes (default true). A
   * one-shot process (the CLI) keeps none: on PostgreSQL it only bumps the change generation and
   * starts no poller.
   */
  readonly followChanges?: boolean
}

/** The configured database's client alone (the CLI's `migrate` needs no more). */
export const clientLayer = (options: DatabaseOptions): Layer.Layer<SqlClient.SqlClient, StartupError> =>
  options.url._tag === "Postgres" ? postgresClient(options, options.url) : sqliteClient(options)

const sqliteClient = (options: DatabaseOptions, busyTimeoutMillis = options.sqliteBusyTimeoutMillis) =>
  Sqlite.layer({ filename: options.url._tag === "SqliteFile" ? options.url.filename : ":memory:", busyTimeoutMillis })

/**
 * How long SQLite waits on another process's lock while opening and migrating: processes started
 * together on one new file take turns instead of failing. The event loop serves nothing yet; once
 * migrated, the configured (short) wait applies.
 */
const SQLITE_START_PATIENCE_MILLIS = 5_000

/**
 * Loaded when PostgreSQL is configured, not at start: its client brings `@effect/sql-pg`'s compiler
 * and, with it, the `pg` driver's modules, which a server on SQLite would evaluate for nothing.
 */
const postgresClient = (options: DatabaseOptions, url: Extract<DatabaseUrl, { _tag: "Postgres" }>) =>
  Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./postgres/Postgres.js")), (Postgres) =>
    Postgres.layer({
      url: url.url,
      poolSize: url.poolSize,
      ...(options.connectRetryFor === undefined ? {} : { connectRetryFor: options.connectRetryFor })
    })))

/**
 * The share of the PostgreSQL pool a dependency's writes may hold at once, so that writes queue in
 * the bulkhead (and are refused with `OVERLOADED` past it) instead of in the driver, and reads
 * always find a connection. The memory store takes a quarter (at least one), the database the rest.
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

/**
 * The client, migrated, with its change signal: SQLite's own counter, or on a server database the
 * change generation every instance reads (its table exists once migrated).
 */
const migratedClient = (options: DatabaseOptions): Layer.Layer<SqlClient.SqlClient | ChangeSignal.ChangeSignal, StartupError> =>
  options.url._tag === "Postgres"
    ? (options.followChanges === false ? ChangeSignal.announcingLayer : ChangeSignal.polledLayer()).pipe(
      Layer.provideMerge(migrated),
      Layer.provideMerge(postgresClient(options, options.url))
    )
    : Layer.effect(
      ChangeSignal.ChangeSignal,
      Effect.map(Effect.all({ dataVersion: Sqlite.DataVersion, commitsElsewhere: Sqlite.CommitsElsewhere }), ChangeSignal.fromSqlite)
    ).pipe(
      Layer.provideMerge(Layer.effectDiscard(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.sqliteBusyTimeoutMillis))}`)).pipe(
          Effect.mapError((error) => new StartupError("DATABASE_URL", `cannot set the SQLite busy timeout (${error.message})`))
        )
      )),
      Layer.provideMerge(migrated),
      Layer.provideMerge(sqliteClient(options, SQLITE_START_PATIENCE_MILLIS))
    )

/** The database for the whole process: client, migrations applied, its change signal, the `Database` door. */
export const layer = (options: DatabaseOptions) =>
  Layer.effect(
    Database,
    Database.make(sizedToPool(options.resilience ?? defaultResilience, options.url, "database"), options.url._tag !== "Postgres")
  ).pipe(Layer.provideMerge(migratedClient(options)))
