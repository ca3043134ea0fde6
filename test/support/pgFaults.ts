/**
 * What the PostgreSQL fault tests share: a Bulwark on a PostgreSQL database the test names (a fresh
 * clone on the shared server, the same reached through a proxy the test controls, or a database of
 * a private cluster), and the moves a test makes against its connections from the outside.
 */
import { SQL } from "bun"
import { POSTGRES_ADMIN_URL, harness, postgresUnreachable } from "./postgres.js"
import { startServer, type TestServer, type TestServerOptions } from "./server.js"

/**
 * True when the shared PostgreSQL answers; otherwise prints why and returns false, or throws under
 * `CI=true`, where a PostgreSQL fault test must never be skipped.
 */
export const requireSharedPostgres = async (what: string): Promise<boolean> => {
  const unreachable = await postgresUnreachable()
  if (unreachable === undefined) return true
  if (process.env.CI === "true") throw new Error(`${unreachable}, and CI must not skip ${what}`)
  console.warn(`skipping ${what}: ${unreachable}`)
  return false
}

/** A Bulwark whose `DATABASE_URL` is `databaseUrl` (migrated at start, as in production). */
export const startServerOn = async (databaseUrl: string, options: Omit<TestServerOptions, "databaseFile"> = {}): Promise<TestServer> => {
  const previous = harness.dialect
  harness.dialect = "postgres"
  try {
    return await startServer({ ...options, databaseFile: databaseUrl })
  } finally {
    harness.dialect = previous
  }
}

export const databaseNameOf = (url: string): string => decodeURIComponent(new URL(url).pathname.slice(1))

/** The same database, reached through `proxy` instead. */
export const viaProxy = (url: string, proxy: { readonly host: string; readonly port: number }): string => {
  const copy = new URL(url)
  copy.hostname = proxy.host
  copy.port = String(proxy.port)
  return copy.toString()
}

/** Runs `use` with a one-connection client of the test's own on `url`, closed afterwards. */
export const withConnection = async <A>(url: string, use: (sql: SQL) => Promise<A>): Promise<A> => {
  const sql = new SQL({ url, max: 1, idleTimeout: 5, connectionTimeout: 5 })
  try {
    return await use(sql)
  } finally {
    await sql.close({ timeout: 1 })
  }
}

/**
 * `pg_terminate_backend` of every connection Bulwark holds to `database` (its pool names itself
 * `bulwark`), as an operator or a failover would; returns how many were ended.
 */
export const terminateBulwarkConnections = (database: string, adminUrl = POSTGRES_ADMIN_URL): Promise<number> =>
  withConnection(adminUrl, async (sql) => {
    const rows: Array<{ ended: boolean }> = await sql`
      SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
      WHERE datname = ${database} AND application_name = 'bulwark' AND pid <> pg_backend_pid()`
    return rows.filter((row) => row.ended).length
  })

/** Bulwark's connections to `database` that are waiting on a lock right now. */
export const bulwarkLockWaits = (database: string, adminUrl = POSTGRES_ADMIN_URL): Promise<number> =>
  withConnection(adminUrl, async (sql) => {
    const [row]: Array<{ waiting: number }> = await sql`
      SELECT count(*)::int AS waiting FROM pg_stat_activity
      WHERE datname = ${database} AND application_name = 'bulwark' AND wait_event_type = 'Lock'`
    return row?.waiting ?? 0
  })

/** The value of one Prometheus sample on `/metrics`, or 0 when it is not there yet. */
export const metricValue = async (server: TestServer, sample: string): Promise<number> => {
  const text = await (await server.admin("/metrics")).text()
  const escaped = sample.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")
  return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1] ?? 0)
}
