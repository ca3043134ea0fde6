/**
 * An `@effect/sql` client over Bun's own PostgreSQL driver (`Bun.SQL`), with `@effect/sql-pg`'s
 * compiler, so statements, `sql.insert`, `sql.in`, transactions (nested ones as savepoints) and the
 * migrator behave exactly as they do with `@effect/sql-pg`, with faster reads (measured: README,
 * Dependencies). Errors keep the driver's own error as `cause`: SQLSTATE is in its `errno`.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { makeCompiler } from "@effect/sql-pg/PgClient"
import { SQL, type ReservedSQL } from "bun"
import { Effect, Redacted, type Scope, Stream } from "effect"

export interface BunPgClientOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  /** How long opening one connection may take. */
  readonly connectTimeoutSeconds: number
  /** Idle connections are closed after this long (they are reopened on demand). */
  readonly idleTimeoutSeconds: number
  readonly applicationName: string
}

/** What a query or a reserved connection can run: the pool itself or one reserved connection. */
interface Queryable {
  readonly unsafe: (query: string, params?: Array<unknown>) => SQL.Query<any>
}

type TransformRows = (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

/** The driver's own words, with SQLSTATE (or its connection error code) first. */
export const describeDriverError = (cause: unknown): string => {
  if (!(cause instanceof Error)) return String(cause)
  const { code, errno } = cause as { code?: unknown; errno?: unknown }
  const state = typeof errno === "string" ? errno : typeof code === "string" ? code : undefined
  return state === undefined ? cause.message : `${state}: ${cause.message}`
}

const run = <A>(target: Queryable, query: string, params: ReadonlyArray<unknown>, read: (query: SQL.Query<any>) => Promise<A>) =>
  Effect.async<A, SqlError>((resume) => {
    const pending = target.unsafe(query, params as Array<unknown>)
    read(pending).then(
      (result) => resume(Effect.succeed(result)),
      (cause) => resume(Effect.fail(new SqlError({ cause, message: describeDriverError(cause) })))
    )
    // An interrupted call (its timeout, a client that left) cancels the statement on the server.
    return Effect.sync(() => pending.cancel())
  })

/**
 * 57P01/57P02 answer a statement only when its connection was terminated (by an operator, a
 * failover, a crash): the statement did not run. The pool hands out each dead connection once
 * before it has read the server's farewell, so a statement on the pool is run again at once on
 * another, and a reserved connection (a transaction's) found dead by its first statement (BEGIN) is
 * exchanged for another; up to once per connection of the pool, outside any retry budget.
 */
const terminatedUnderUs = (error: SqlError) => {
  const state = (error.cause as { errno?: unknown } | null)?.errno
  return state === "57P01" || state === "57P02"
}

/** Where a connection's statements go. */
interface Target {
  readonly queryable: () => Queryable
  /** After a statement met a terminated connection: whether it may run again (on another one). */
  readonly afterTermination: Effect.Effect<boolean, SqlError>
  readonly served: () => void
}

const poolTarget = (pool: SQL): Target => ({ queryable: () => pool, afterTermination: Effect.succeed(true), served: () => {} })

const reserveFrom = (pool: SQL) =>
  Effect.tryPromise({
    try: () => pool.reserve(),
    catch: (cause) => new SqlError({ cause, message: `cannot reserve a connection: ${describeDriverError(cause)}` })
  })

/** A reserved connection, exchanged for another while it has served nothing yet. */
class Reserved implements Target {
  private served_ = false
  constructor(private readonly pool: SQL, public current: ReservedSQL) {}
  queryable = () => this.current
  served = () => {
    this.served_ = true
  }
  get afterTermination(): Effect.Effect<boolean, SqlError> {
    if (this.served_) return Effect.succeed(false)
    const dead = this.current
    return Effect.map(reserveFrom(this.pool), (fresh) => {
      dead.release()
      this.current = fresh
      return true
    })
  }
}

const rowsOf = (query: SQL.Query<any>): Promise<ReadonlyArray<any>> => query.then((rows: Array<any>) => Array.from(rows))

class BunPgConnection implements Connection {
  /** `reconnects`: how many terminated connections a statement may meet. */
  constructor(private readonly target: Target, private readonly reconnects: number) {}

  private run<A>(query: string, params: ReadonlyArray<unknown>, read: (query: SQL.Query<any>) => Promise<A>) {
    const attempt = (left: number): Effect.Effect<A, SqlError> =>
      run(this.target.queryable(), query, params, read).pipe(
        Effect.tap(() => this.target.served()),
        Effect.catchIf(
          (error) => left > 0 && terminatedUnderUs(error),
          (error) => Effect.flatMap(this.target.afterTermination, (again) => (again ? attempt(left - 1) : Effect.fail(error)))
        )
      )
    return attempt(this.reconnects)
  }
  execute(query: string, params: ReadonlyArray<unknown>, transformRows: TransformRows) {
    const rows = this.run(query, params, rowsOf)
    return transformRows === undefined ? rows : Effect.map(rows, transformRows)
  }
  executeRaw(query: string, params: ReadonlyArray<unknown>) {
    return this.run(query, params, (pending) => pending.then((result: unknown) => result))
  }
  executeValues(query: string, params: ReadonlyArray<unknown>) {
    return this.run(query, params, (pending) => pending.values().then((rows: Array<Array<unknown>>) => Array.from(rows)))
  }
  executeUnprepared(query: string, params: ReadonlyArray<unknown>, transformRows: TransformRows) {
    return this.execute(query, params, transformRows)
  }
  executeWithoutTransform(query: string, params: ReadonlyArray<unknown>) {
    return this.execute(query, params, undefined)
  }
  /** Bulwark streams no query results; this reads the whole result, then streams it. */
  executeStream(query: string, params: ReadonlyArray<unknown>, transformRows: TransformRows) {
    return Stream.fromIterableEffect(this.execute(query, params, transformRows))
  }
}

export interface BunPgClient {
  readonly sql: SqlClient.SqlClient
  /** The driver's pool, for what `SqlClient` does not say (closing it, `pg_notify`). */
  readonly pool: SQL
}

export const make = (options: BunPgClientOptions): Effect.Effect<BunPgClient, never, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new SQL(Redacted.value(options.url), {
          max: options.maxConnections,
          connectionTimeout: options.connectTimeoutSeconds,
          idleTimeout: options.idleTimeoutSeconds,
          connection: { application_name: options.applicationName }
        })
      ),
      (pool) => Effect.promise(() => pool.close({ timeout: 1 })).pipe(Effect.timeoutOption("2 seconds"))
    )
    const reserve = Effect.acquireRelease(
      Effect.map(reserveFrom(pool), (reserved) => new Reserved(pool, reserved)),
      (reserved) => Effect.sync(() => reserved.current.release())
    ).pipe(Effect.map((reserved): Connection => new BunPgConnection(reserved, options.maxConnections)))
    const url = new URL(Redacted.value(options.url))
    const sql = yield* SqlClient.make({
      acquirer: Effect.succeed(new BunPgConnection(poolTarget(pool), options.maxConnections)),
      transactionAcquirer: reserve,
      compiler: makeCompiler(),
      spanAttributes: [
        ["db.system.name", "postgresql"],
        ["db.namespace", url.pathname.slice(1) || "postgres"],
        ["server.address", url.hostname],
        ["server.port", Number(url.port || 5432)]
      ]
    })
    return { sql, pool }
  })
