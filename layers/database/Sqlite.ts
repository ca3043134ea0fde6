/**
 * The embedded database: SQLite in WAL mode through `@effect/sql-sqlite-bun`. Opening the file is
 * checked at start, so a bad `DATABASE_URL` stops the process instead of failing the first request.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-bun"
import { Context, Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { StartupError } from "../../src/Config.js"

export interface SqliteOptions {
  /** `:memory:` or a file path. */
  readonly filename: string
  /** How long the driver itself waits on a lock before reporting SQLITE_BUSY. */
  readonly busyTimeoutMillis: number
}

const cannotOpen = (reason: unknown) =>
  new StartupError("DATABASE_URL", `cannot open the SQLite database (${reason instanceof Error ? reason.message : String(reason)})`)

export const layer = (options: SqliteOptions): Layer.Layer<SqliteClient.SqliteClient | SqlClient.SqlClient, StartupError> =>
  Layer.scopedContext(
    Effect.gen(function*() {
      if (options.filename !== ":memory:") {
        yield* Effect.try({
          try: () => mkdirSync(dirname(options.filename), { recursive: true }),
          catch: cannotOpen
        })
      }
      const client = yield* SqliteClient.make({ filename: options.filename }).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(cannotOpen(defect)))
      )
      yield* Effect.all([
        client.unsafe(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMillis))}`),
        client.unsafe("PRAGMA foreign_keys = ON"),
        client.unsafe("PRAGMA synchronous = NORMAL"),
        client.unsafe("SELECT count(*) FROM sqlite_master")
      ]).pipe(Effect.mapError((error) => cannotOpen(error.cause ?? error)))
      return Context.make(SqliteClient.SqliteClient, client).pipe(Context.add(SqlClient.SqlClient, client))
    })
  ).pipe(Layer.provide(Reactivity.layer))
