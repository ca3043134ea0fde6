/**
 * The one door to the database. Every repository call goes through `call`, which names the
 * operation (for spans and errors) and translates driver errors; it is also the seam where the
 * resilience policies (timeout, breaker, retry, bulkhead) wrap each call.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, ParseResult, Schema } from "effect"
import { StartupError, type DatabaseUrl } from "../../src/Config.js"
import type { Conflict, DbOperational } from "../../src/errors.js"
import { translateSqlError, type TranslateOptions } from "./errors.js"
import * as Migrations from "./Migrations.js"
import * as Sqlite from "./Sqlite.js"

export type CallKind = "read" | "write"

export interface DatabaseShape {
  readonly sql: SqlClient.SqlClient
  readonly call: <A, R>(
    operation: string,
    kind: CallKind,
    effect: Effect.Effect<A, SqlError, R>
  ) => Effect.Effect<A, DbOperational, R>
  /** A write whose unique constraint the caller expects to fail sometimes: that becomes `Conflict`. */
  readonly insertUnique: <A, R>(
    operation: string,
    effect: Effect.Effect<A, SqlError, R>,
    conflict: Required<TranslateOptions>
  ) => Effect.Effect<A, Conflict | DbOperational, R>
  /** Runs `effect` in one transaction; a failure of BEGIN or COMMIT is translated like any call. */
  readonly transaction: <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | DbOperational, R>
}

export class Database extends Context.Tag("bulwark/Database")<Database, DatabaseShape>() {
  static readonly make = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const span = (operation: string, kind: CallKind) =>
      Effect.withSpan(`db.${operation}`, { attributes: { "db.operation.name": operation, "bulwark.db.kind": kind } })
    const call: DatabaseShape["call"] = (operation, kind, effect) =>
      effect.pipe(Effect.catchTag("SqlError", translateSqlError(operation)), span(operation, kind))
    const insertUnique: DatabaseShape["insertUnique"] = (operation, effect, conflict) =>
      effect.pipe(Effect.catchTag("SqlError", translateSqlError(operation, conflict)), span(operation, "write"))
    const transaction: DatabaseShape["transaction"] = (operation, effect) =>
      sql.withTransaction(effect).pipe(
        Effect.catchIf((error): error is SqlError => error instanceof SqlError, translateSqlError(operation)),
        span(operation, "write")
      )
    return Database.of({ sql, call, insertUnique, transaction })
  })

  static readonly layerFromClient = Layer.effect(Database, Database.make)
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
}

export const clientLayer = (options: DatabaseOptions) => {
  switch (options.url._tag) {
    case "SqliteFile":
      return Sqlite.layer({ filename: options.url.filename, busyTimeoutMillis: options.sqliteBusyTimeoutMillis })
    case "SqliteMemory":
      return Sqlite.layer({ filename: ":memory:", busyTimeoutMillis: options.sqliteBusyTimeoutMillis })
    case "Postgres":
      return Layer.fail(new StartupError("DATABASE_URL", "PostgreSQL is not supported yet; use file:PATH or :memory:"))
  }
}

const migrated = Layer.effectDiscard(
  Migrations.run.pipe(
    Effect.mapError((error) => new StartupError("DATABASE_URL", `migrations failed: ${error.message}`))
  )
)

/** The database for the whole process: client, migrations applied, the `Database` door. */
export const layer = (options: DatabaseOptions) =>
  Layer.merge(Database.layerFromClient, migrated).pipe(Layer.provideMerge(clientLayer(options)))
