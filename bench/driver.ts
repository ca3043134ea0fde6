/**
 * `bun bench/driver.ts`: the two PostgreSQL clients Bulwark could run on, through the same
 * `@effect/sql` `SqlClient` interface the repositories use: `@effect/sql-pg` (driver `pg`) and
 * Bulwark's own client over `Bun.SQL` (`layers/database/postgres/BunPgClient.ts`). Two operations,
 * each by 32 concurrent callers on a pool of 10: a SELECT by primary key, and an INSERT in a
 * transaction. Rounds alternate the clients; ops/s per run are printed (README, Dependencies).
 *
 * Settings (environment): DRIVER_BENCH_URL (a role that may create databases; the loopback
 * PostgreSQL), DRIVER_BENCH_SECONDS per run (3), DRIVER_BENCH_ROUNDS (3).
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SQL } from "bun"
import { Effect, Layer, Redacted } from "effect"
import * as BunPgClient from "../layers/database/postgres/BunPgClient.js"

const ADMIN_URL = process.env["DRIVER_BENCH_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const SECONDS = Number(process.env["DRIVER_BENCH_SECONDS"] ?? 3)
const ROUNDS = Number(process.env["DRIVER_BENCH_ROUNDS"] ?? 3)
const CALLERS = 32
const POOL = 10
const KEYS = 1000

const database = `bulwark_driver_bench_${process.pid}`
const url = (() => {
  const parsed = new URL(ADMIN_URL)
  parsed.pathname = `/${database}`
  return parsed.toString()
})()

const clients: Record<string, Layer.Layer<SqlClient.SqlClient>> = {
  "@effect/sql-pg": PgClient.layer({ url: Redacted.make(url), maxConnections: POOL }).pipe(Layer.orDie),
  "Bun.SQL client": Layer.scoped(
    SqlClient.SqlClient,
    Effect.map(
      BunPgClient.make({ url: Redacted.make(url), maxConnections: POOL, connectTimeoutSeconds: 5, idleTimeoutSeconds: 60, applicationName: "bench" }),
      (client) => client.sql
    )
  ).pipe(Layer.provide(Reactivity.layer))
}

const operations = {
  "SELECT by key": (sql: SqlClient.SqlClient, n: number) => sql`SELECT k, v FROM kv WHERE k = ${`k${n % KEYS}`}`,
  "INSERT in a transaction": (sql: SqlClient.SqlClient, n: number) => sql.withTransaction(sql`INSERT INTO log (k, v) VALUES (${`k${n}`}, ${"payload"})`)
} as const

/** Operations per second by `CALLERS` fibers, each running `operation` in a loop for `SECONDS`. */
const measure = (operation: (sql: SqlClient.SqlClient, n: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (let i = 0; i < 200; i++) yield* operation(sql, i) // warm the pool and the statement caches
    let done = 0
    const until = performance.now() + SECONDS * 1000
    const caller = Effect.gen(function*() {
      while (performance.now() < until) {
        yield* operation(sql, done)
        done++
      }
    })
    const started = performance.now()
    yield* Effect.all(Array.from({ length: CALLERS }, () => caller), { concurrency: "unbounded", discard: true })
    return done / ((performance.now() - started) / 1000)
  })

const admin = new SQL(ADMIN_URL, { max: 1 })
await admin.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
await admin.unsafe(`CREATE DATABASE "${database}"`)
try {
  const setup = new SQL(url, { max: 1 })
  await setup.unsafe("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
  await setup.unsafe("CREATE TABLE log (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)")
  await setup.unsafe(`INSERT INTO kv SELECT 'k' || i, 'value ' || i FROM generate_series(0, ${KEYS - 1}) AS i`)
  await setup.close()

  const results: Record<string, Record<string, Array<number>>> = {}
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [client, layer] of Object.entries(clients)) {
      for (const [name, operation] of Object.entries(operations)) {
        const opsPerSecond = await Effect.runPromise(Effect.provide(measure(operation), layer))
        ;((results[name] ??= {})[client] ??= []).push(opsPerSecond)
        console.error(`round ${round} ${client} ${name}: ${Math.round(opsPerSecond)} ops/s`)
      }
    }
  }
  console.log(`\n${CALLERS} callers, pool of ${POOL}, ${ROUNDS} rounds of ${SECONDS} s (ops/s, median and range):\n`)
  console.log(`| operation | ${Object.keys(clients).join(" | ")} |`)
  console.log(`| --- | ${Object.keys(clients).map(() => "---:").join(" | ")} |`)
  for (const [name, byClient] of Object.entries(results)) {
    const cells = Object.keys(clients).map((client) => {
      const runs = [...(byClient[client] ?? [])].sort((a, b) => a - b)
      return `${Math.round(runs[Math.floor(runs.length / 2)] ?? 0)} (${Math.round(runs[0] ?? 0)}–${Math.round(runs[runs.length - 1] ?? 0)})`
    })
    console.log(`| ${name} | ${cells.join(" | ")} |`)
  }
} finally {
  await admin.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
  await admin.close()
}
