/**
 * The PostgreSQL the PostgreSQL half of the bench runs on (`BENCH_POSTGRES_URL`, the loopback server
 * by default). Every server gets a database of its own, freshly created for the run under a unique
 * name and dropped at the end, so no run reads another's rows or indexes.
 */
import { SQL } from "bun"

export const DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"

export interface BenchPostgres {
  /** The server as `BENCH_POSTGRES_URL` names it, with any password left out, for the report. */
  readonly description: string
  /** Creates an empty database for `label` and returns its URL. */
  readonly createDatabase: (label: string) => Promise<string>
  /** Drops every database this run created, even while a server is still connected to it. */
  readonly dropAll: () => Promise<void>
}

const withDatabase = (url: URL, database: string): string => {
  const copy = new URL(url)
  copy.pathname = `/${database}`
  return copy.toString()
}

/** Connects once to check the server answers, and names what failed when it does not. */
export const openBenchPostgres = async (rawUrl: string): Promise<BenchPostgres> => {
  const url = new URL(rawUrl)
  const admin = new SQL({ url: rawUrl, max: 1, idleTimeout: 5, connectionTimeout: 5 })
  const version = await admin`SHOW server_version`.then(
    (rows: Array<{ server_version: string }>) => rows[0]?.server_version ?? "?",
    (error: unknown) => {
      void admin.close()
      throw new Error(`PostgreSQL at ${url.host} (BENCH_POSTGRES_URL) does not answer: ${error instanceof Error ? error.message : String(error)}`)
    }
  )
  const created: Array<string> = []
  const suffix = crypto.randomUUID().slice(0, 8)
  return {
    description: `PostgreSQL ${version} at ${url.host}`,
    createDatabase: async (label) => {
      // Numbered: one run may start the same server twice (the table, then the fan-out).
      const name = `bench_${label.replaceAll(/[^a-z0-9]/g, "_")}_${suffix}_${created.length}`
      await admin.unsafe(`CREATE DATABASE "${name}"`)
      created.push(name)
      return withDatabase(url, name)
    },
    dropAll: async () => {
      for (const name of created.splice(0)) await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await admin.close()
    }
  }
}
