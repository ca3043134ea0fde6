/**
 * SQLSTATE translation (SPEC §8) and the driver's traps, each provoked on a real PostgreSQL: a
 * database cloned for this file, and connections of the test's own for the other side of a race.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, ManagedRuntime, Option, Redacted, Ref } from "effect"
import * as Database from "../../layers/database/Database.js"
import { classifyDriverError } from "../../layers/database/errors.js"
import * as Postgres from "../../layers/database/postgres/Postgres.js"
import { StartupError } from "../../src/Config.js"
import { Conflict, DbOperational } from "../../src/errors.js"
import { cloneDatabase, connect, describeOnPostgres, type TestDatabase } from "../support/postgres.js"

let clone: TestDatabase
let runtime: ManagedRuntime.ManagedRuntime<Database.Database | SqlClient.SqlClient, unknown>

const run = <A, E>(effect: Effect.Effect<A, E, Database.Database | SqlClient.SqlClient>) => runtime.runPromiseExit(effect)

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got a success")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

const defectOf = <A, E>(exit: Exit.Exit<A, E>): unknown => {
  if (Exit.isSuccess(exit)) throw new Error("expected a defect, got a success")
  const defects = [...Cause.defects(exit.cause)]
  if (defects.length === 0) throw new Error(`expected a defect, got ${Cause.pretty(exit.cause)}`)
  return defects[0]
}

const sqlStateOf = (error: SqlError) => (error.cause as { errno?: unknown }).errno

await describeOnPostgres("SQLSTATE translation on PostgreSQL", () => {
  beforeAll(async () => {
    clone = await cloneDatabase()
    runtime = ManagedRuntime.make(
      Database.layer({ url: { _tag: "Postgres", url: Redacted.make(clone.url), poolSize: 3 }, sqliteBusyTimeoutMillis: 0 })
    )
    await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE probe (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`))
  })
  // Each test provokes failures of its own; none should meet a breaker the previous one opened.
  beforeEach(() => runtime.runPromise(Effect.flatMap(Database.Database, (db) => db.breaker.force("close"))))
  afterAll(async () => {
    await runtime.dispose()
    await clone.drop()
  })

  test("23505: a unique violation the caller expects is Conflict; one it does not is a defect naming SQLSTATE", async () => {
    const insert = Effect.flatMap(Database.Database, (db) =>
      db.insertUnique("tenants.insert", db.sql`INSERT INTO tenants ${db.sql.insert({ id: "t1", name: "dup", created_at: "2026-12-02T00:00:00.000Z" })}`, {
        onUnique: "TENANT_ALREADY_EXISTS",
        conflictDetail: "exists"
      }))
    expect(Exit.isSuccess(await run(insert))).toBe(true)
    const conflict = failureOf(await run(insert))
    expect(conflict).toBeInstanceOf(Conflict)
    expect((conflict as Conflict).code).toBe("TENANT_ALREADY_EXISTS")

    const unexpected = defectOf(await run(Effect.flatMap(Database.Database, (db) =>
      db.write("tenants.insert", db.sql`INSERT INTO tenants ${db.sql.insert({ id: "t2", name: "dup", created_at: "2026-12-02T00:00:00.000Z" })}`))))
    expect(unexpected).toBeInstanceOf(SqlError)
    expect(sqlStateOf(unexpected as SqlError)).toBe("23505")
    expect((unexpected as SqlError).message).toContain("23505")
  })

  test("40001 (a concurrent update under REPEATABLE READ) is retried: the transaction runs again and commits", async () => {
    await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO probe VALUES ('rr', 0)`))
    const other = connect(clone.url)
    const attempts = await runtime.runPromise(Ref.make(0))
    try {
      const exit = await run(Effect.flatMap(Database.Database, (db) =>
        db.transaction(
          "probe.bump",
          Effect.gen(function*() {
            const attempt = yield* Ref.updateAndGet(attempts, (n) => n + 1)
            yield* db.write("probe.isolation", db.sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
            yield* db.read("probe.read", db.sql`SELECT n FROM probe WHERE k = 'rr'`)
            // Another session commits a change to the row this snapshot has read, on the first try only.
            if (attempt === 1) yield* Effect.promise(() => other.unsafe("UPDATE probe SET n = n + 10 WHERE k = 'rr'"))
            yield* db.write("probe.update", db.sql`UPDATE probe SET n = n + 1 WHERE k = 'rr'`)
          })
        )))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(await runtime.runPromise(Ref.get(attempts))).toBe(2)
      const rows = await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT n FROM probe WHERE k = 'rr'`))
      expect(rows[0]?.n).toBe(11)
    } finally {
      await other.close()
    }
  })

  test("a connection lost before COMMIT: withTransaction dies with the SqlError; Database.transaction fails with it typed, retries and commits", async () => {
    const admin = connect(clone.url)
    // The transaction's own backend is terminated (and gone) before its COMMIT, on the first try only.
    const losingItsConnection = (key: string, attempts: Ref.Ref<number>, sql: SqlClient.SqlClient) =>
      Effect.gen(function*() {
        const attempt = yield* Ref.updateAndGet(attempts, (n) => n + 1)
        yield* sql`INSERT INTO probe VALUES (${`${key}${attempt}`}, 1)`
        if (attempt > 1) return
        const [own] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
        yield* Effect.promise(async () => {
          await admin.unsafe("SELECT pg_terminate_backend($1)", [own!.pid])
          while ((await admin.unsafe("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [own!.pid])).length > 0) await Bun.sleep(5)
        })
      })
    try {
      const raw = await runtime.runPromise(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* Effect.exit(sql.withTransaction(losingItsConnection("raw", yield* Ref.make(0), sql)))
      }))
      const defect = defectOf(raw)
      expect(defect).toBeInstanceOf(SqlError)
      expect(classifyDriverError(defect as SqlError)).toMatchObject({ _tag: "Operational", transient: true })

      const attempts = await runtime.runPromise(Ref.make(0))
      const guarded = await run(Effect.flatMap(Database.Database, (db) => db.transaction("probe.commit", losingItsConnection("guarded", attempts, db.sql))))
      expect(Exit.isSuccess(guarded)).toBe(true)
      expect(await runtime.runPromise(Ref.get(attempts))).toBe(2)
      const rows = await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ k: string }>`SELECT k FROM probe WHERE k LIKE 'raw%' OR k LIKE 'guarded%' ORDER BY k`))
      expect(rows.map((row) => row.k)).toEqual(["guarded2"])
    } finally {
      await admin.close()
    }
  })

  test("40P01: of two transactions that deadlock, the one PostgreSQL picks fails with it, classified transient (retried)", async () => {
    await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO probe VALUES ('d1', 0), ('d2', 0)`))
    const outcome = await runtime.runPromise(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const firstLocked = yield* Deferred.make<void>()
      const secondLocked = yield* Deferred.make<void>()
      const side = (mine: string, theirs: string, locked: Deferred.Deferred<void>, other: Deferred.Deferred<void>) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`SET LOCAL deadlock_timeout = '20ms'`
          yield* sql`UPDATE probe SET n = n + 1 WHERE k = ${mine}`
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(other)
          yield* sql`UPDATE probe SET n = n + 1 WHERE k = ${theirs}`
        })).pipe(Effect.exit)
      const first = yield* Effect.fork(side("d1", "d2", firstLocked, secondLocked))
      const second = yield* Effect.fork(side("d2", "d1", secondLocked, firstLocked))
      return [yield* Fiber.join(first), yield* Fiber.join(second)] as const
    }))
    const failed = outcome.filter(Exit.isFailure)
    expect(failed.length).toBe(1)
    const error = failureOf(failed[0]!)
    expect(error).toBeInstanceOf(SqlError)
    expect(sqlStateOf(error as SqlError)).toBe("40P01")
    expect(classifyDriverError(error as SqlError)).toEqual({ _tag: "Operational", reason: "locked", transient: true })
  })

  test("57014: a statement cancelled by statement_timeout is the call's timeout, a DbOperational", async () => {
    const error = failureOf(await run(Effect.flatMap(Database.Database, (db) =>
      db.transaction(
        "probe.slow",
        Effect.zipRight(db.write("probe.timeout", db.sql`SET LOCAL statement_timeout = '30ms'`), db.read("probe.sleep", db.sql`SELECT pg_sleep(5)`))
      ))))
    expect(error).toBeInstanceOf(DbOperational)
    expect(error).toMatchObject({ reason: "timeout", transient: true })
    expect(sqlStateOf((error as DbOperational).cause as SqlError)).toBe("57014")
  })

  test("42P01 and 42703: a table or column of our schema that is gone is DbOperational (schema, not transient); a syntax error is a defect", async () => {
    const missingTable = failureOf(await run(Effect.flatMap(Database.Database, (db) =>
      Effect.zipRight(db.write("probe.drop", db.sql`DROP TABLE memory`), db.read("memory.list", db.sql`SELECT key FROM memory`)))))
    expect(missingTable).toBeInstanceOf(DbOperational)
    expect(missingTable).toMatchObject({ reason: "schema", transient: false })
    expect(sqlStateOf((missingTable as DbOperational).cause as SqlError)).toBe("42P01")

    const missingColumn = failureOf(await run(Effect.flatMap(Database.Database, (db) => db.read("probe.column", db.sql`SELECT gone FROM probe`))))
    expect(missingColumn).toMatchObject({ _tag: "DbOperational", reason: "schema", transient: false })

    const syntax = defectOf(await run(Effect.flatMap(Database.Database, (db) => db.read("probe.syntax", db.sql`SELEC 1`))))
    expect((syntax as SqlError).message).toContain("42601")
  })

  test("57P01: after pg_terminate_backend of every pooled connection, the next statements and transactions succeed on new ones, with no retry of ours", async () => {
    const admin = connect(clone.url)
    try {
      for (let round = 0; round < 5; round++) {
        // Three statements at once, so that the pool holds three connections to terminate.
        await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.all([sql`SELECT pg_sleep(0.01)`, sql`SELECT pg_sleep(0.01)`, sql`SELECT pg_sleep(0.01)`], { concurrency: 3 })))
        const terminated = await admin.unsafe(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        expect(terminated.length).toBeGreaterThanOrEqual(1)
        // Straight through the client: no Database retry, no budget.
        const raw = await run(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.all([sql<{ one: number }>`SELECT 1 AS one`, sql<{ one: number }>`SELECT 1 AS one`, sql<{ one: number }>`SELECT 1 AS one`], { concurrency: 3 })))
        if (Exit.isFailure(raw)) throw new Error(Cause.pretty(raw.cause))
        expect(raw.value.map((rows) => rows[0]?.one)).toEqual([1, 1, 1])
        // Transactions too: a reserved connection found dead at BEGIN is exchanged for another.
        await admin.unsafe(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        const transactions = await run(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.all(Array.from({ length: 3 }, () => sql.withTransaction(sql<{ one: number }>`SELECT 1 AS one`)), { concurrency: 3 })))
        if (Exit.isFailure(transactions)) throw new Error(Cause.pretty(transactions.cause))
        expect(transactions.value.map((rows) => rows[0]?.one)).toEqual([1, 1, 1])
      }
    } finally {
      await admin.close()
    }
  })

  test("int8 and count(*) arrive as strings from the driver", async () => {
    const rows = await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ count: unknown; big: unknown }>`SELECT count(*) AS count, 9007199254740993::int8 AS big FROM probe`))
    expect(typeof rows[0]?.count).toBe("string")
    expect(rows[0]?.big).toBe("9007199254740993")
  })

  test("refused (a closed port): the start retries for the configured time, then stops with one line naming DATABASE_URL", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
    const port = closed.port
    closed.stop(true)
    const started = performance.now()
    const exit = await Effect.runPromiseExit(Layer.build(
      Postgres.layer({ url: Redacted.make(`postgres://postgres@127.0.0.1:${port}/postgres`), poolSize: 1, connectRetryFor: "600 millis" })
    ).pipe(Effect.scoped))
    const elapsed = performance.now() - started
    const error = failureOf(exit)
    expect(error).toBeInstanceOf(StartupError)
    expect((error as StartupError).message).toMatch(/^DATABASE_URL: cannot reach PostgreSQL \(ERR_POSTGRES_CONNECTION_REFUSED/)
    expect(elapsed).toBeGreaterThanOrEqual(500)
    expect(elapsed).toBeLessThan(10_000)
  })

  test("a refusing server is not waited for: a database that does not exist stops the start at once", async () => {
    const started = performance.now()
    const url = new URL(clone.url)
    url.pathname = "/bulwark_no_such_database"
    const exit = await Effect.runPromiseExit(Layer.build(
      Postgres.layer({ url: Redacted.make(url.toString()), poolSize: 1, connectRetryFor: "5 seconds" })
    ).pipe(Effect.scoped))
    expect((failureOf(exit) as StartupError).message).toContain("3D000")
    expect(performance.now() - started).toBeLessThan(4000)
  })
})
