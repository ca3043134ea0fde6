/**
 * An `@effect/sql` client over one `bun:sqlite` connection, as `@effect/sql-sqlite-bun`'s `make`
 * builds it (the same compiler, one connection behind a one-permit semaphore, transactions holding
 * it until they end), that also answers the connection's own `PRAGMA data_version`. That counter
 * moves only when another connection commits (another process, or the CLI), never for this
 * connection's own commits, which is what lets kept API keys survive this process's own writes
 * (see `ChangeSignal`); `@effect/sql-sqlite-bun` keeps its connection to itself.
 */
import type { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import { Database } from "bun:sqlite"
import { Context, Effect, Scope } from "effect"

export interface BunSqliteClient {
  readonly sql: SqlClient.SqlClient
  /**
   * The connection's `PRAGMA data_version`, read now: it moves when another connection has
   * committed since the last read. `undefined` while this connection is inside a transaction (its
   * answer would be the transaction's snapshot, not now) or when it cannot be read.
   */
  readonly commitsElsewhere: () => number | undefined
}

export const make = (filename: string): Effect.Effect<BunSqliteClient, never, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.sync(() => new Database(filename, { readwrite: true, create: true })),
      (db) => Effect.sync(() => db.close())
    )
    db.run("PRAGMA journal_mode = WAL;")

    const run = (sql: string, params: ReadonlyArray<unknown>, read: "all" | "values") =>
      Effect.withFiberRuntime<Array<any>, SqlError>((fiber) => {
        try {
          const statement = db.query(sql)
          // @ts-ignore bun-types lacks `safeIntegers` on statements (as in @effect/sql-sqlite-bun)
          statement.safeIntegers(Context.get(fiber.currentContext, SqlClient.SafeIntegers))
          return Effect.succeed((statement[read](...(params as Array<any>)) ?? []) as Array<any>)
        } catch (cause) {
          return Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
        }
      })

    const connection: Connection = {
      execute: (sql, params, transformRows) => (transformRows ? Effect.map(run(sql, params, "all"), transformRows) : run(sql, params, "all")),
      executeRaw: (sql, params) => run(sql, params, "all"),
      executeValues: (sql, params) => run(sql, params, "values"),
      executeUnprepared: (sql, params, transformRows) => (transformRows ? Effect.map(run(sql, params, "all"), transformRows) : run(sql, params, "all")),
      executeStream: () => Effect.dieMessage("executeStream not implemented") as never
    }

    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )
    const sql = yield* SqlClient.make({
      acquirer,
      compiler: Statement.makeCompilerSqlite(),
      transactionAcquirer,
      spanAttributes: [["db.system.name", "sqlite"]]
    })

    const dataVersion = db.query<{ data_version: number }, []>("PRAGMA data_version")
    const commitsElsewhere = (): number | undefined => {
      if (db.inTransaction) return undefined
      try {
        return dataVersion.get()?.data_version
      } catch {
        // Unreadable is "cannot tell": the caller trusts nothing kept and reads the database, which answers for itself.
        return undefined
      }
    }
    return { sql, commitsElsewhere }
  })
