/**
 * The suite on PostgreSQL. `test/postgres/` holds one small file per test file that applies: it
 * switches `startServer` to PostgreSQL and imports the original with `?postgres` (a second, separate
 * instance of that module). Every server then gets its own database, cloned from a template migrated
 * once per run; names carry this process's id, so parallel runs never collide and the databases a
 * dead run left behind are dropped by the next one.
 *
 * Without a reachable PostgreSQL those files skip with the reason printed, and fail under `CI=true`.
 */
import { afterAll, beforeAll, describe, test } from "bun:test"
import { SQL } from "bun"
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as Migrations from "../../layers/database/Migrations.js"
import * as Postgres from "../../layers/database/postgres/Postgres.js"

/** A role that may create databases, on the server the PostgreSQL runs use. */
export const POSTGRES_ADMIN_URL = process.env["BULWARK_TEST_POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** Connections per test server: several servers and other runs share one PostgreSQL. */
export const TEST_POOL_SIZE = 4

export const harness: { dialect: "sqlite" | "postgres" } = { dialect: "sqlite" }

const PREFIX = `bulwark_test_${process.pid}_`

const urlOf = (database: string) => {
  const url = new URL(POSTGRES_ADMIN_URL)
  url.pathname = `/${database}`
  return url.toString()
}

const withAdmin = async <A>(use: (admin: SQL) => Promise<A>): Promise<A> => {
  const admin = new SQL(POSTGRES_ADMIN_URL, { max: 1, connectionTimeout: 2 })
  try {
    return await use(admin)
  } finally {
    await admin.close({ timeout: 1 })
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

let reachability: Promise<string | undefined> | undefined

/** `undefined` when PostgreSQL answers, else why not. */
export const postgresUnreachable = (): Promise<string | undefined> =>
  reachability ??= withAdmin(async (admin) => {
    await admin.unsafe("SELECT 1")
    return undefined
  }).catch((error: unknown) => `PostgreSQL at ${new URL(POSTGRES_ADMIN_URL).host} is not reachable (${error instanceof Error ? error.message : String(error)})`)

/** Databases of runs whose process is gone. */
const dropStale = (admin: SQL) =>
  admin.unsafe("SELECT datname FROM pg_database WHERE datname ~ '^bulwark_test_[0-9]+_'").then(async (rows: Array<{ datname: string }>) => {
    for (const { datname } of rows) {
      const pid = Number(/^bulwark_test_(\d+)_/.exec(datname)?.[1])
      if (!alive(pid)) await admin.unsafe(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
    }
  })

let template: Promise<string> | undefined

/** The migrated template of this run, created on first use. */
const templateDatabase = (): Promise<string> =>
  template ??= withAdmin(async (admin) => {
    await dropStale(admin)
    const name = `${PREFIX}tmpl_${randomBytes(4).toString("hex")}`
    await admin.unsafe(`CREATE DATABASE "${name}"`)
    await Effect.runPromise(
      Migrations.run.pipe(Effect.provide(Postgres.layer({ url: Redacted.make(urlOf(name)), poolSize: 1 })))
    )
    return name
  })

export interface TestDatabase {
  readonly url: string
  readonly drop: () => Promise<void>
}

/** A fresh, migrated database of its own (about 50 ms), dropped with `drop`. */
export const cloneDatabase = async (): Promise<TestDatabase> => {
  const source = await templateDatabase()
  const name = `${PREFIX}${randomBytes(6).toString("hex")}`
  await withAdmin(async (admin) => {
    for (let attempt = 0;; attempt++) {
      try {
        await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${source}"`)
        return
      } catch (error) {
        // 55006: a connection to the template has not finished closing yet.
        if ((error as { errno?: string }).errno !== "55006" || attempt >= 50) throw error
        await Bun.sleep(20)
      }
    }
  })
  return {
    url: urlOf(name),
    drop: () => withAdmin((admin) => admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined)
  }
}

/** Drops this run's template; called once after the whole run (test/support/preload.ts). */
export const dropTemplate = async () => {
  if (template === undefined) return
  const name = await template.catch(() => undefined)
  if (name !== undefined) await withAdmin((admin) => admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`))
}

/**
 * Runs the test file that `load` imports (with `?postgres`) against PostgreSQL, or, when PostgreSQL
 * cannot be reached, skips it with the reason (fails under `CI=true`).
 */
export const onPostgres = async (file: string, load: () => Promise<unknown>) => {
  const unreachable = await postgresUnreachable()
  if (unreachable !== undefined) {
    if (process.env["CI"] === "true") {
      test(`${file} on PostgreSQL`, () => {
        throw new Error(`${unreachable}; CI needs it`)
      })
    } else {
      console.warn(`skipping ${file} on PostgreSQL: ${unreachable}`)
      test.skip(`${file} on PostgreSQL (${unreachable})`, () => {})
    }
    return
  }
  // Set from the file's evaluation on (Bun evaluates and runs test files one at a time), so that
  // `sqliteOnly` decides when tests are registered, also inside `describe` blocks.
  harness.dialect = "postgres"
  beforeAll(() => {
    harness.dialect = "postgres"
  })
  afterAll(() => {
    harness.dialect = "sqlite"
  })
  await load().catch((error: unknown) => {
    // A file that fails to load may run no hooks: the next file must not inherit PostgreSQL.
    harness.dialect = "sqlite"
    throw error
  })
}

/**
 * A test file that needs PostgreSQL itself (not a wrapper): `describe` when it is reachable, else
 * skipped with the reason printed (failed under `CI=true`).
 */
export const describeOnPostgres = async (name: string, body: () => void) => {
  const unreachable = await postgresUnreachable()
  if (unreachable === undefined) return describe(name, body)
  if (process.env["CI"] === "true") {
    return test(name, () => {
      throw new Error(`${unreachable}; CI needs it`)
    })
  }
  console.warn(`skipping ${name}: ${unreachable}`)
  return describe.skip(`${name} (${unreachable})`, body)
}

/** One connection of its own to `url`, outside any pool under test. */
export const connect = (url: string) => new SQL(url, { max: 1, connectionTimeout: 2 })

/**
 * Rows of `query` (with `?` placeholders) read from a server's database, whichever it is:
 * `databaseUrl` as `TestServer.databaseUrl` gives it.
 */
export const readRows = async <A>(databaseUrl: string, query: string, params: ReadonlyArray<string | number | null>): Promise<Array<A>> => {
  if (databaseUrl.startsWith("file:")) {
    const { Database } = await import("bun:sqlite")
    const reader = new Database(databaseUrl.slice("file:".length), { readonly: true })
    try {
      return reader.query(query).all(...params) as Array<A>
    } finally {
      reader.close()
    }
  }
  const reader = connect(databaseUrl)
  try {
    let index = 0
    return Array.from(await reader.unsafe(query.replaceAll("?", () => `$${++index}`), [...params])) as Array<A>
  } finally {
    await reader.close()
  }
}

/**
 * `test`, or `test.skip` on PostgreSQL, for a test that works on SQLite's own file (takes its lock,
 * renames a table through a second connection, reads the file after close). `reason` says which.
 */
export const sqliteOnly = (reason: string): typeof test => {
  if (harness.dialect !== "postgres") return test
  return ((name: string, ...rest: Array<unknown>) => test.skip(`${name} (SQLite only: ${reason})`, ...(rest as []))) as unknown as typeof test
}
