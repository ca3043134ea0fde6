/**
 * A PostgreSQL 15 cluster of the test's own, on a free loopback port, in a temporary directory, that
 * the test may stop (as a crash: `immediate`, or as an operator: `fast`) and start again on the same
 * port with the same data; the shared PostgreSQL on 5432 is never touched. Fast settings for a
 * throwaway cluster: no fsync, trust authentication, its Unix socket in its own directory. Without
 * `initdb`/`pg_ctl` the caller skips with a printed reason, except under `CI=true`, where that is a
 * failure. PostgreSQL refuses to run as root, so as root the programs run as the `postgres` user.
 */
import { SQL } from "bun"
import { chownSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"

const initdbPath = Bun.which("initdb")
const pgCtlPath = Bun.which("pg_ctl")
const runuserPath = Bun.which("runuser")

const isRoot = (): boolean => process.getuid?.() === 0

/** The system user that owns the cluster when we run as root, with its uid and gid. */
const clusterOwner = (): { readonly name: string; readonly uid: number; readonly gid: number } | null => {
  if (!isRoot()) return null
  const entry = Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim()
  const group = Bun.spawnSync(["id", "-g", "postgres"]).stdout.toString().trim()
  return entry === "" || group === "" ? null : { name: "postgres", uid: Number(entry), gid: Number(group) }
}

/** Why a private cluster cannot be started here, or null when it can. */
const missingPrograms = (): string | null => {
  if (initdbPath === null || pgCtlPath === null) return "initdb and pg_ctl (PostgreSQL 15 server programs) are not on PATH"
  if (isRoot() && (runuserPath === null || clusterOwner() === null)) {
    return "running as root, and there is no postgres user (or no runuser) to run the cluster as"
  }
  return null
}

/** True when the test may start a cluster; otherwise prints why and returns false (throws under CI). */
export const requirePostgresServer = (what = "the PostgreSQL fault tests"): boolean => {
  const missing = missingPrograms()
  if (missing === null) return true
  if (process.env.CI === "true") throw new Error(`${missing}, and CI must not skip ${what}`)
  console.warn(`skipping ${what}: ${missing}`)
  return false
}

const freePort = (): number => {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  return port
}

export interface OwnPostgres {
  readonly host: string
  readonly port: number
  readonly directory: string
  /** `postgres://postgres@127.0.0.1:PORT/<database>` (trust authentication: no password). */
  readonly url: (database?: string) => string
  /** A short-lived connection of the test's own (one at a time), closed after `run`. */
  readonly query: <A = Record<string, unknown>>(text: string, database?: string) => Promise<Array<A>>
  /** Creates a database with a unique name and returns the name. */
  readonly createDatabase: (prefix?: string) => Promise<string>
  /** `fast` ends every session (57P01) and stops; `immediate` is a crash (no shutdown checkpoint). */
  readonly stop: (mode?: "fast" | "immediate") => Promise<void>
  /** Starts the stopped cluster again, same port, same data. */
  readonly start: () => Promise<void>
  /** Stops the cluster and removes its directory. */
  readonly close: () => Promise<void>
}

const run = async (command: ReadonlyArray<string>, asUser: string | null): Promise<void> => {
  const argv = asUser === null ? [...command] : [runuserPath!, "-u", asUser, "--", ...command]
  const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } })
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  if (code !== 0) throw new Error(`${command.join(" ")} exited with ${code}: ${(stderr || stdout).trim().split("\n").slice(-5).join("\n")}`)
}

export const startOwnPostgres = async (): Promise<OwnPostgres> => {
  const missing = missingPrograms()
  if (missing !== null) throw new Error(`cannot start a private PostgreSQL: ${missing}`)
  const owner = clusterOwner()
  const directory = mkdtempSync(join(tmpdir(), "bulwark-pg-"))
  if (owner !== null) chownSync(directory, owner.uid, owner.gid)
  const dataDir = join(directory, "data")
  const logFile = join(directory, "server.log")
  const host = "127.0.0.1"
  const port = freePort()
  const superuser = owner?.name ?? userInfo().username
  const settings = [
    `-p ${port}`,
    `-k ${directory}`,
    `-c listen_addresses=${host}`,
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c shared_buffers=16MB",
    "-c max_connections=60",
    "-c log_min_messages=warning"
  ].join(" ")
  const pgCtl = (...args: Array<string>) => run([pgCtlPath!, "-D", dataDir, ...args], owner?.name ?? null)

  await run([initdbPath!, "-D", dataDir, "-A", "trust", "-U", superuser, "--no-sync", "-E", "UTF8", "--locale=C"], owner?.name ?? null)
  let running = false
  const start = async () => {
    await pgCtl("-l", logFile, "-w", "-t", "30", "-o", settings, "start")
    running = true
  }
  const stop = async (mode: "fast" | "immediate" = "fast") => {
    if (!running) return
    await pgCtl("-m", mode, "-w", "-t", "30", "stop")
    running = false
  }
  const url = (database = "postgres") => `postgres://${superuser}@${host}:${port}/${database}`
  const query = async <A,>(text: string, database?: string): Promise<Array<A>> => {
    const sql = new SQL({ url: url(database), max: 1, idleTimeout: 1 })
    try {
      return [...(await sql.unsafe(text))] as Array<A>
    } finally {
      await sql.close()
    }
  }
  let created = 0
  const createDatabase = async (prefix = "bulwark") => {
    const name = `${prefix}_${++created}_${crypto.randomUUID().slice(0, 8)}`
    await query(`CREATE DATABASE "${name}"`)
    return name
  }
  try {
    await start()
  } catch (error) {
    rmSync(directory, { recursive: true, force: true })
    throw error
  }
  return {
    host,
    port,
    directory,
    url,
    query,
    createDatabase,
    stop,
    start,
    close: async () => {
      try {
        await stop("immediate")
      } finally {
        rmSync(directory, { recursive: true, force: true })
      }
    }
  }
}
