/** Driver errors are translated once, in the database layer: never a 404, never a null. */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { Context, Effect, Either, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { classifyDriverError } from "../layers/database/errors.js"
import * as Sqlite from "../layers/database/sqlite/Sqlite.js"

const driverError = (statement: (db: Database) => void): SqlError => {
  const db = new Database(":memory:")
  db.run("CREATE TABLE t (id TEXT PRIMARY KEY, n TEXT NOT NULL UNIQUE)")
  db.run("INSERT INTO t VALUES ('a', 'x')")
  try {
    statement(db)
  } catch (cause) {
    return new SqlError({ cause, message: "Failed to execute statement" })
  } finally {
    db.close()
  }
  throw new Error("the statement did not fail")
}

describe("classifyDriverError", () => {
  test("primary key and unique violations are unique violations", () => {
    expect(classifyDriverError(driverError((db) => db.run("INSERT INTO t VALUES ('a', 'y')")))._tag).toBe("UniqueViolation")
    expect(classifyDriverError(driverError((db) => db.run("INSERT INTO t VALUES ('b', 'x')")))._tag).toBe("UniqueViolation")
  })

  test("a NOT NULL violation or a syntax error is a bug", () => {
    expect(classifyDriverError(driverError((db) => db.run("INSERT INTO t VALUES ('c', NULL)")))._tag).toBe("Bug")
    expect(classifyDriverError(driverError((db) => db.run("SELEC 1")))._tag).toBe("Bug")
  })

  test("a missing table means the database cannot serve, permanently", () => {
    expect(classifyDriverError(driverError((db) => db.run("SELECT * FROM gone")))).toEqual({
      _tag: "Operational",
      reason: "schema",
      transient: false
    })
  })

  test("a locked database is transient", () => {
    const file = `${require("node:os").tmpdir()}/bulwark-lock-${crypto.randomUUID()}.db`
    const holder = new Database(file)
    holder.run("PRAGMA journal_mode = WAL")
    holder.run("CREATE TABLE t (id TEXT)")
    holder.run("BEGIN EXCLUSIVE")
    try {
      const error = driverError(() => {
        const writer = new Database(file)
        writer.run("PRAGMA busy_timeout = 0")
        writer.run("INSERT INTO t VALUES ('x')")
      })
      expect(classifyDriverError(error)).toEqual({ _tag: "Operational", reason: "locked", transient: true })
    } finally {
      holder.run("ROLLBACK")
      holder.close()
    }
  })

  test("PostgreSQL SQLSTATEs are classified the same way", () => {
    const pg = (code: string) => classifyDriverError(new SqlError({ cause: { code, message: "pg" } }))
    expect(pg("23505")._tag).toBe("UniqueViolation")
    expect(pg("08006")).toMatchObject({ _tag: "Operational", transient: true })
    expect(pg("40P01")).toMatchObject({ _tag: "Operational", transient: true })
    expect(pg("42601")._tag).toBe("Bug")
  })
})

describe("the change counter (DataVersion)", () => {
  test("sees another connection's commit from the next turn of the event loop, and is read once per turn", async () => {
    const directory = mkdtempSync(join(tmpdir(), "bulwark-version-"))
    const filename = join(directory, "bulwark.db")
    try {
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(Sqlite.layer({ filename, busyTimeoutMillis: 25 }))
        const changeCounter = Context.get(context, Sqlite.DataVersion)
        const read = () => Either.getOrThrow(changeCounter())
        const other = new Database(filename)
        other.run("CREATE TABLE IF NOT EXISTS t (x)")
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        const before = read()
        other.run("INSERT INTO t VALUES (1)")
        // Same turn: the value read at its start still stands (requests of this turn were sent before the commit).
        expect(read()).toBe(before)
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        const after = read()
        expect(after).not.toBe(before)
        // Nothing committed since: the next turn reads the same value again.
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        expect(read()).toBe(after)
        other.close()
      })))
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })
})

describe("the served connection's own change counter (CommitsElsewhere)", () => {
  test("stands through this process's own commits, moves for another connection's (also one made between two of ours), and cannot tell inside a transaction", async () => {
    const directory = mkdtempSync(join(tmpdir(), "bulwark-elsewhere-"))
    const filename = join(directory, "bulwark.db")
    const nextTurn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
    try {
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(Sqlite.layer({ filename, busyTimeoutMillis: 25 }))
        const commitsElsewhere = Context.get(context, Sqlite.CommitsElsewhere)
        const sql = Context.get(context, SqlClient.SqlClient)
        yield* sql`CREATE TABLE t (x)`
        const other = new Database(filename)
        yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
        yield* nextTurn
        const first = commitsElsewhere()
        expect(first).toBeNumber()

        // Our own commits, on the served connection, in this turn and the next ones.
        for (let i = 0; i < 3; i++) {
          yield* sql`INSERT INTO t VALUES (${i})`
          yield* sql.withTransaction(sql`INSERT INTO t VALUES (${i})`)
          yield* nextTurn
          expect(commitsElsewhere()).toBe(first)
        }

        // Another connection commits, then we commit: ours does not hide theirs.
        other.run("INSERT INTO t VALUES ('elsewhere')")
        yield* sql`INSERT INTO t VALUES ('ours')`
        yield* nextTurn
        const second = commitsElsewhere()
        expect(second).not.toBe(first)
        yield* sql`INSERT INTO t VALUES ('ours again')`
        yield* nextTurn
        expect(commitsElsewhere()).toBe(second)

        // Inside a transaction the connection's answer would be its snapshot's: it cannot tell.
        yield* nextTurn
        const inside = yield* sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES ('in')`, Effect.sync(() => commitsElsewhere())))
        expect(inside).toBeUndefined()
        expect(commitsElsewhere()).toBe(second)
      })))
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })
})

describe("the write bulkheads against the PostgreSQL pool", () => {
  test("the memory store's writes hold a quarter of the pool (at least one), the database's the rest; SQLite keeps its settings", async () => {
    const { defaultResilience, sizedToPool } = await import("../layers/database/Database.js")
    const { Redacted } = await import("effect")
    const postgres = (poolSize: number) => ({ _tag: "Postgres" as const, url: Redacted.make("postgres://x"), poolSize })
    const writes = (poolSize: number, share: "database" | "memory") => sizedToPool(defaultResilience, postgres(poolSize), share).writes.maxConcurrent
    expect([writes(10, "database"), writes(10, "memory")]).toEqual([8, 2])
    expect([writes(4, "database"), writes(4, "memory")]).toEqual([3, 1])
    expect([writes(1, "database"), writes(1, "memory")]).toEqual([1, 1])
    expect(writes(100, "database")).toBe(defaultResilience.writes.maxConcurrent)
    expect(sizedToPool(defaultResilience, { _tag: "SqliteFile", filename: "x.db" }, "database")).toBe(defaultResilience)
  })
})
