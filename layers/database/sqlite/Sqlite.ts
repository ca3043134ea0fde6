/**
 * The embedded database: SQLite in WAL mode through `@effect/sql-sqlite-bun`. Opening the file is
 * checked at start, so a bad `DATABASE_URL` stops the process instead of failing the first request.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Database as BunDatabase } from "bun:sqlite"
import { Context, Effect, Either, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { StartupError } from "../../../src/Config.js"
import * as BunSqliteClient from "./BunSqliteClient.js"

export interface SqliteOptions {
  /** `:memory:` or a file path. */
  readonly filename: string
  /** How long the driver itself waits on a lock before reporting SQLITE_BUSY. */
  readonly busyTimeoutMillis: number
}

/**
 * SQLite's change counter (`PRAGMA data_version`): it moves whenever another connection commits,
 * another process's or this process's own. It vouches for what is kept in process while the shared
 * cache cannot serve (API keys follow `CommitsElsewhere` instead). It is read with a prepared
 * statement on a connection of its own (4–7 µs; through the SQL client it cost about 21),
 * and at most once per turn of the event loop: under load one read serves the requests of a turn
 * (about 14 with 32 busy connections), which took about 15 µs off each hot read (the read, and the
 * processor caches it evicts). Freshness is kept: a turn serves requests whose sockets were ready
 * when it began, so a commit another process finished before such a request was sent is seen; a
 * request sent later is read in a later turn, after a new read. (The one exception is a request a
 * client pipelines behind another on the same connection within that turn's microseconds.)
 */
export type DataVersionShape = () => Either.Either<number, SqlError>

export class DataVersion extends Context.Tag("bulwark/Sqlite/DataVersion")<DataVersion, DataVersionShape>() {}

/**
 * The served connection's own `PRAGMA data_version` (`BunSqliteClient.commitsElsewhere`): it moves
 * only when another connection commits, never for this process's own writes, so kept API keys
 * outlive the process's own message posts. Read at most once per turn of the event loop, as
 * `DataVersion` is (and for the same reasons); `undefined` when it cannot be told now (inside a
 * transaction, or unreadable), which the caller takes as "trust nothing kept".
 */
export type CommitsElsewhereShape = () => number | undefined

export class CommitsElsewhere extends Context.Tag("bulwark/Sqlite/CommitsElsewhere")<CommitsElsewhere, CommitsElsewhereShape>() {}

/** `read` at most once per turn of the event loop; a turn that could not tell asks again. */
const oncePerTurn = (read: () => number | undefined): CommitsElsewhereShape => {
  let thisTurn: number | undefined
  const nextTurn = () => {
    thisTurn = undefined
  }
  return () => {
    if (thisTurn === undefined) {
      thisTurn = read()
      if (thisTurn !== undefined) setImmediate(nextTurn)
    }
    return thisTurn
  }
}

/**
 * A private in-memory database has no other connection that could write to it, so its counter is
 * constant; this process's own writes invalidate what they change explicitly.
 */
const dataVersionOf = (filename: string) =>
  filename === ":memory:"
    ? Effect.succeed(() => Either.right(0))
    : Effect.map(
      Effect.acquireRelease(Effect.sync(() => new BunDatabase(filename)), (probe) => Effect.sync(() => probe.close())),
      (probe) => {
        const statement = probe.query<{ data_version: number }, []>("PRAGMA data_version")
        let thisTurn: number | undefined
        const nextTurn = () => {
          thisTurn = undefined
        }
        // Synchronous, as the read is: it is asked on every API-key lookup, inside another step.
        return (): Either.Either<number, SqlError> => {
          if (thisTurn === undefined) {
            try {
              thisTurn = statement.get()?.data_version ?? Number.NaN
            } catch (cause) {
              return Either.left(new SqlError({ cause, message: "Failed to read PRAGMA data_version" }))
            }
            setImmediate(nextTurn)
          }
          return Either.right(thisTurn)
        }
      }
    )

const cannotOpen = (reason: unknown) =>
  new StartupError("DATABASE_URL", `cannot open the SQLite database (${reason instanceof Error ? reason.message : String(reason)})`)

export const layer = (
  options: SqliteOptions
): Layer.Layer<SqlClient.SqlClient | DataVersion | CommitsElsewhere, StartupError> =>
  Layer.scopedContext(
    Effect.gen(function*() {
      if (options.filename !== ":memory:") {
        yield* Effect.try({
          try: () => mkdirSync(dirname(options.filename), { recursive: true }),
          catch: cannotOpen
        })
      }
      if (options.filename !== ":memory:") {
        // Processes starting together on a new file: switching it to WAL takes a lock the others
        // wait for (as long as `busyTimeoutMillis`) rather than fail on at once.
        yield* Effect.try({
          try: () => {
            const preparing = new BunDatabase(options.filename, { create: true })
            try {
              preparing.run(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMillis))}`)
              preparing.run("PRAGMA journal_mode = WAL")
            } finally {
              preparing.close()
            }
          },
          catch: cannotOpen
        })
      }
      const { commitsElsewhere, sql: client } = yield* BunSqliteClient.make(options.filename).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(cannotOpen(defect)))
      )
      yield* Effect.all([
        client.unsafe(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMillis))}`),
        client.unsafe("PRAGMA foreign_keys = ON"),
        client.unsafe("PRAGMA synchronous = NORMAL"),
        client.unsafe("SELECT count(*) FROM sqlite_master")
      ]).pipe(Effect.mapError((error) => cannotOpen(error.cause ?? error)))
      // Opened after the client, so the file exists and is in WAL mode.
      const dataVersion = yield* dataVersionOf(options.filename).pipe(Effect.catchAllDefect((defect) => Effect.fail(cannotOpen(defect))))
      return Context.make(SqlClient.SqlClient, client).pipe(
        Context.add(DataVersion, dataVersion),
        // A private in-memory database has no other connection: only this process's own key changes move its keys' mark.
        Context.add(CommitsElsewhere, options.filename === ":memory:" ? () => 0 : oncePerTurn(commitsElsewhere))
      )
    })
  ).pipe(Layer.provide(Reactivity.layer))
