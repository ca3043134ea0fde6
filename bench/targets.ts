/**
 * The servers under test: Bulwark as it is deployed (every middleware on), and the two reference
 * servers, each once on SQLite and once on PostgreSQL. Each starts on a free loopback port, is timed
 * from spawn to its first 200 on `/health/ready`, and is seeded with one tenant, one API key and one
 * session.
 */
import type { Subprocess } from "bun"
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { freePort, rssMegabytes, spawnServer, stopProcess, tailOf, waitForReady } from "./processes.js"
import type { BenchPostgres } from "./postgres.js"
import { POOL_SIZE, seedPostgres } from "./reference/pgStore.js"
import { seedDatabase } from "./reference/store.js"

export type TargetId = "bulwark" | "bulwark-redis-down" | "raw" | "hono" | "bulwark-pg" | "raw-pg" | "hono-pg"

export type ReferenceId = "raw" | "hono" | "raw-pg" | "hono-pg"

export type BulwarkId = "bulwark" | "bulwark-redis-down" | "bulwark-pg"

export const TARGET_LABELS: Readonly<Record<TargetId, string>> = {
  bulwark: "Bulwark",
  "bulwark-redis-down": "Bulwark, Redis unreachable",
  raw: "raw Bun.serve + bun:sqlite",
  hono: "Hono on Bun",
  "bulwark-pg": "Bulwark on PostgreSQL",
  "raw-pg": "raw Bun.serve + Bun.SQL",
  "hono-pg": "Hono on Bun + Bun.SQL"
}

/** The Bulwark a reference is compared with: the one on the same database. */
export const BULWARK_COMPARED_WITH: Readonly<Record<ReferenceId, BulwarkId>> = {
  raw: "bulwark",
  hono: "bulwark",
  "raw-pg": "bulwark-pg",
  "hono-pg": "bulwark-pg"
}

export const isReference = (id: TargetId): id is ReferenceId => id in BULWARK_COMPARED_WITH

export interface Target {
  readonly id: TargetId
  readonly baseUrl: string
  readonly apiKey: string
  readonly sessionId: string
  readonly process: Subprocess
  readonly logFile: string
  readonly startupMillis: number
  readonly idleRssMb: number
  /** Bulwark only: for `/health` details. */
  readonly adminToken?: string
  /** Bulwark only: an MCP session (2025-11-25) opened with the key, for the MCP scenarios. */
  readonly mcpSessionId?: string
}

export interface StartContext {
  readonly repoRoot: string
  /** Where `src/main.ts` of the Bulwark under test is. */
  readonly bulwarkDir: string
  readonly workDir: string
  /** The core servers run on, or null when pinning is not possible. */
  readonly core: number | null
  /** Every target serves a session with this id, so one URL shape fits all. */
  readonly sessionId: string
  /** Where the PostgreSQL targets get their databases; absent when the run is on SQLite only. */
  readonly postgres?: BenchPostgres | null
}

const postgresOf = (context: StartContext): BenchPostgres => {
  if (context.postgres === undefined || context.postgres === null) throw new Error("a PostgreSQL target needs BENCH_POSTGRES_URL's server")
  return context.postgres
}

/** High enough that wrk is never throttled; the limiter still counts every request. */
export const UNTHROTTLED_RATE_LIMIT = "1000000000/1s"

/** Far above any scenario's streams. */
const UNCAPPED_STREAMS = "1000000"

/** Idle RSS is read this long after ready, once start-up allocations have settled. */
const IDLE_SETTLE_MILLIS = 1000

const secret = (): string => randomBytes(32).toString("base64url")

/** A minimal environment, so nothing from the caller's shell (OTEL_*, REDIS_URL, ...) leaks into a target. */
const baseEnv = (): Record<string, string> => ({
  PATH: process.env["PATH"] ?? "/usr/bin:/bin",
  HOME: process.env["HOME"] ?? "/tmp"
})

interface Started {
  readonly baseUrl: string
  readonly process: Subprocess
  readonly logFile: string
  readonly startupMillis: number
  readonly idleRssMb: number
}

/** Spawns a server and waits for its first 200 on `/health/ready`; a server that does not start is named, with its log's tail. */
const launchUntilReady = async (
  id: TargetId,
  launch: { readonly cwd: string; readonly command: ReadonlyArray<string> },
  env: (port: number) => Record<string, string>,
  options: { readonly core: number | null; readonly logFile: string }
): Promise<{ readonly baseUrl: string; readonly process: Subprocess; readonly startupMillis: number }> => {
  const port = freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const startedAt = performance.now()
  const child = spawnServer(launch.command, { cwd: launch.cwd, env: { ...baseEnv(), ...env(port) }, logFile: options.logFile, core: options.core })
  try {
    return { baseUrl, process: child, startupMillis: await waitForReady(`${baseUrl}/health/ready`, child, startedAt) }
  } catch (error) {
    throw new Error(`${TARGET_LABELS[id]} did not start: ${error instanceof Error ? error.message : String(error)}\n${tailOf(options.logFile)}`)
  }
}

const startServer = async (
  id: TargetId,
  context: StartContext,
  launch: { readonly cwd: string; readonly command: ReadonlyArray<string> },
  env: (port: number) => Record<string, string>
): Promise<Started> => {
  const logFile = join(context.workDir, `${id}.log`)
  const started = await launchUntilReady(id, launch, env, { core: context.core, logFile })
  await Bun.sleep(IDLE_SETTLE_MILLIS)
  return { ...started, logFile, idleRssMb: rssMegabytes(started.process.pid) }
}

const postJson = async (url: string, bearer: string, body: unknown): Promise<{ readonly status: number; readonly json: unknown }> => {
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  return { status: response.status, json: await response.json().catch(() => null) }
}

/** Through the public API, as an operator would: a tenant (with its first key), then the session. */
const seedBulwark = async (baseUrl: string, adminToken: string, sessionId: string): Promise<string> => {
  const tenant = await postJson(`${baseUrl}/v1/admin/tenants`, adminToken, { name: "bench" })
  const apiKey = (tenant.json as { api_key?: unknown } | null)?.api_key
  if (tenant.status !== 201 || typeof apiKey !== "string") {
    throw new Error(`POST /v1/admin/tenants answered ${tenant.status}: ${JSON.stringify(tenant.json)}`)
  }
  const session = await postJson(`${baseUrl}/v1/sessions`, apiKey, { id: sessionId, title: "bench" })
  if (session.status !== 201) throw new Error(`POST /v1/sessions answered ${session.status}: ${JSON.stringify(session.json)}`)
  return apiKey
}

/** Opens an MCP session as a client of the 2025-11-25 revision does: initialize, then initialized. */
const openMcpSession = async (baseUrl: string, apiKey: string): Promise<string> => {
  const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json", accept: "application/json, text/event-stream" }
  const initialized = await fetch(`${baseUrl}/mcp`, {
    method: "POST",
    headers,
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "bench", version: "1" } } })
  })
  const sessionId = initialized.headers.get("mcp-session-id")
  await initialized.text()
  if (initialized.status !== 200 || sessionId === null) throw new Error(`MCP initialize answered ${initialized.status}`)
  const notified = await fetch(`${baseUrl}/mcp`, {
    method: "POST",
    headers: { ...headers, "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })
  })
  if (notified.status !== 202) throw new Error(`MCP notifications/initialized answered ${notified.status}`)
  return sessionId
}

/** How Bulwark is launched, on a database of its own (a fresh file, or a fresh PostgreSQL database). */
const bulwarkLaunch = async (context: StartContext, options: { readonly id: BulwarkId; readonly redisUrl?: string }) => {
  const adminToken = secret()
  const databaseUrl = options.id === "bulwark-pg"
    ? await postgresOf(context).createDatabase(options.id)
    : `file:${join(context.workDir, `${options.id}-${randomBytes(4).toString("hex")}.db`)}`
  return {
    adminToken,
    // As deployed by `bun start`: the bundle `bun run build` writes (built once per bench run).
    launch: { cwd: context.bulwarkDir, command: [process.execPath, "dist/main.js"] },
    env: (port: number): Record<string, string> => ({
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL: databaseUrl,
      // As many connections as the references' pool (it is also Bulwark's default).
      BULWARK_DB_POOL_SIZE: String(POOL_SIZE),
      BULWARK_ADMIN_TOKEN: adminToken,
      BULWARK_JWT_SECRET: secret(),
      BULWARK_RATE_LIMIT: UNTHROTTLED_RATE_LIMIT,
      // The fan-out scenarios open their thousands of streams with one key; the caps are not what they measure.
      BULWARK_MAX_STREAMS_PER_KEY: UNCAPPED_STREAMS,
      BULWARK_MAX_STREAMS: UNCAPPED_STREAMS,
      // No LOG_LEVEL or LOG_FORMAT: the defaults `bun start` runs with (info, json), so every 404
      // writes its warning line to the log file, as it would for a user.
      ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl })
    })
  }
}

export const startBulwark = async (
  context: StartContext,
  options: { readonly id: BulwarkId; readonly redisUrl?: string }
): Promise<Target> => {
  const { adminToken, env, launch } = await bulwarkLaunch(context, options)
  const started = await startServer(options.id, context, launch, env)
  const apiKey = await seedBulwark(started.baseUrl, adminToken, context.sessionId)
  const mcpSessionId = await openMcpSession(started.baseUrl, apiKey)
  return { id: options.id, ...started, apiKey, sessionId: context.sessionId, adminToken, mcpSessionId }
}

/**
 * One start alone, as the first start on a new database: spawn to the first 200 on `/health/ready`
 * (migrations included), then SIGTERM. One start on a shared machine is one sample of its noise, so
 * the goal is judged on the median of several.
 */
export const timeBulwarkStart = async (context: StartContext, id: "bulwark" | "bulwark-pg", attempt: number): Promise<number> => {
  const { env, launch } = await bulwarkLaunch(context, { id })
  const started = await launchUntilReady(id, launch, env, { core: context.core, logFile: join(context.workDir, `${id}-start-${attempt}.log`) })
  await stopProcess(started.process)
  return started.startupMillis
}

const REFERENCE_SCRIPTS: Readonly<Record<ReferenceId, string>> = {
  raw: "raw.ts",
  hono: "hono.ts",
  "raw-pg": "rawPostgres.ts",
  "hono-pg": "honoPostgres.ts"
}

/** Creates and seeds the reference's own database; returns the variable that names it to the server. */
const referenceDatabase = async (context: StartContext, id: ReferenceId, apiKey: string): Promise<Record<string, string>> => {
  const seed = { apiKey, sessionId: context.sessionId }
  if (id === "raw-pg" || id === "hono-pg") {
    const url = await postgresOf(context).createDatabase(id)
    await seedPostgres(url, seed)
    return { BENCH_DATABASE_URL: url }
  }
  const dbPath = join(context.workDir, `${id}.db`)
  seedDatabase(dbPath, seed)
  return { BENCH_DB: dbPath }
}

export const startReference = async (context: StartContext, id: ReferenceId): Promise<Target> => {
  const apiKey = `bk_${secret()}`
  const database = await referenceDatabase(context, id, apiKey)
  const script = join(context.repoRoot, "bench", "reference", REFERENCE_SCRIPTS[id])
  const launch = { cwd: context.repoRoot, command: [process.execPath, script] }
  const started = await startServer(id, context, launch, (port) => ({ PORT: String(port), ...database }))
  return { id, ...started, apiKey, sessionId: context.sessionId }
}

/** The cache entry of Bulwark's `/health` details, e.g. `degraded; cache down, breaker open`. */
export const describeCacheHealth = async (target: Target): Promise<string> => {
  const response = await fetch(`${target.baseUrl}/health`, { headers: { authorization: `Bearer ${target.adminToken ?? ""}` } })
  const report = await response.json().catch(() => null) as
    | { status?: string; dependencies?: { cache?: { status?: string; breaker?: string; kind?: string } } }
    | null
  const cache = report?.dependencies?.cache
  return `/health ${response.status} ${report?.status ?? "?"}; cache (${cache?.kind ?? "?"}) ${cache?.status ?? "?"}, breaker ${cache?.breaker ?? "?"}`
}
