/**
 * Soak (`bun run soak`): Bulwark as `bun start` runs it (the built bundle, SQLite file, a Redis of
 * its own for cache and rate limits) under mixed traffic for N minutes: reads, writes, 404s, memory
 * with TTLs, SSE subscribers that come and go, MCP tool calls and failed authentications. Midway
 * Redis is paused (`CLIENT PAUSE ... ALL`) and, later, another connection holds SQLite's
 * `BEGIN EXCLUSIVE` past the retry budget.
 *
 * Prints one row per interval (RSS, open descriptors, open event streams, event-loop delay p99 from
 * `/metrics`, req/s, answers by status) and exits 1 when RSS grows more than 10% after the warm-up
 * interval, descriptors or streams do not return to their baseline once the traffic stops, any 500
 * (or an MCP `INTERNAL_ERROR`) appears, a request fails without an answer, or the server exits.
 *
 *   bun run soak                       (10 minutes; builds first)
 *   bun run soak -- --minutes 2        (or SOAK_MINUTES=2)
 *
 * Settings (environment): SOAK_MINUTES (10), SOAK_INTERVAL_SECONDS (60), SOAK_WORKERS (8 request
 * loops), SOAK_STREAMS (20 event streams kept open, each for 2-20 s).
 */
import { Database } from "bun:sqlite"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../test/support/redis.js"
import { freePort, rssMegabytes, spawnServer, stopAll, stopProcess, tailOf, waitForReady } from "./processes.js"

const { values: flags } = parseArgs({ args: Bun.argv.slice(2), options: { minutes: { type: "string" } }, strict: true })

const positive = (name: string, raw: string | undefined, fallback: number) => {
  const value = raw === undefined || raw === "" ? fallback : Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: expected a positive number, got "${raw}"`)
  return value
}

const minutes = positive("--minutes", flags.minutes ?? process.env["SOAK_MINUTES"], 10)
const intervalSeconds = positive("SOAK_INTERVAL_SECONDS", process.env["SOAK_INTERVAL_SECONDS"], 60)
const workers = Math.round(positive("SOAK_WORKERS", process.env["SOAK_WORKERS"], 8))
const streamSlots = Math.round(positive("SOAK_STREAMS", process.env["SOAK_STREAMS"], 20))
const totalMillis = minutes * 60_000
const intervalMillis = intervalSeconds * 1000
/** JIT, SQLite's page cache and the pools fill in the first minute; growth is measured from its end. */
const WARMUP_MILLIS = Math.min(60_000, totalMillis / 2)
/** RSS may grow this much from the end of the warm-up to the last interval. */
const RSS_GROWTH_LIMIT = 0.1
/** Long enough for Bun's 10 s idle timeout to close the load's kept-alive connections. */
const SETTLE_MILLIS = 30_000

const progress = (message: string) => console.error(`soak: ${message}`)

// ---------------------------------------------------------------------------------------------
// What the traffic saw, per interval

interface Tally {
  readonly statuses: Map<string, number>
  requests: number
}

const newTally = (): Tally => ({ statuses: new Map(), requests: 0 })
let tally = newTally()
const failures: Array<string> = []
const samplesOf500: Array<string> = []

/** When the last 5xx was answered: after a fault ends, how long until answers are good again. */
let lastServerErrorAt = 0

/** `extra`: a label about an answer already counted (an MCP tool's failure inside a 200), not another request. */
const count = (label: string, sample?: string, extra = false) => {
  if (!extra) tally.requests++
  if (/^5\d\d/.test(label)) lastServerErrorAt = performance.now()
  tally.statuses.set(label, (tally.statuses.get(label) ?? 0) + 1)
  if ((label.startsWith("500") || label === "mcp INTERNAL_ERROR") && samplesOf500.length < 5 && sample !== undefined) samplesOf500.push(sample)
}

// ---------------------------------------------------------------------------------------------
// The server and its Redis

const workDir = mkdtempSync(join(tmpdir(), "bulwark-soak-"))
const databaseFile = join(workDir, "bulwark.db")
const logFile = join(workDir, "bulwark.log")
const adminToken = randomBytes(32).toString("base64url")
const repoRoot = join(import.meta.dir, "..")

let redis: OwnRedis | undefined
let stopping = false

const cleanUp = async () => {
  stopping = true
  await stopAll()
  await redis?.stop()
  rmSync(workDir, { recursive: true, force: true })
}

process.on("SIGINT", () => void cleanUp().then(() => process.exit(130)))

if (!requireRedisServer()) {
  console.error("soak: redis-server is needed (the soak pauses a Redis of its own)")
  process.exit(1)
}
redis = await startOwnRedis()
const port = freePort()
const baseUrl = `http://127.0.0.1:${port}`
const startedAt = performance.now()
const server = spawnServer([process.execPath, "dist/main.js"], {
  cwd: repoRoot,
  env: {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    HOME: process.env["HOME"] ?? "/tmp",
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: `file:${databaseFile}`,
    REDIS_URL: redis.url,
    BULWARK_ADMIN_TOKEN: adminToken,
    BULWARK_JWT_SECRET: randomBytes(32).toString("base64url"),
    // Throttling is not what is soaked: the limiter still counts every request in Redis.
    BULWARK_RATE_LIMIT: "1000000000/1s",
    LOG_LEVEL: "Error"
  },
  logFile,
  core: null
})

try {
  await waitForReady(`${baseUrl}/health/ready`, server, startedAt)
} catch (error) {
  console.error(`soak: the server did not start: ${error instanceof Error ? error.message : String(error)}\n${tailOf(logFile)}`)
  await cleanUp()
  process.exit(1)
}

// ---------------------------------------------------------------------------------------------
// Requests

const json = (bearer: string, body?: unknown): Record<string, string> => ({
  authorization: `Bearer ${bearer}`,
  ...(body === undefined ? {} : { "content-type": "application/json" })
})

/** One request of the traffic: its answer is counted by status, a throw as "no answer". */
const call = async (path: string, init: RequestInit = {}): Promise<{ readonly status: number; readonly text: string } | null> => {
  try {
    const response = await fetch(`${baseUrl}${path}`, init)
    const text = await response.text()
    // A 5xx is counted with its code, so an honest 503 reads apart from anything else.
    const code = response.status >= 500 ? /"code":"([A-Z_]+)"/.exec(text)?.[1] : undefined
    count(code === undefined ? String(response.status) : `${response.status} ${code}`, `${init.method ?? "GET"} ${path} → ${response.status} ${text.slice(0, 300)}`)
    if ((response.status === 503 || response.status === 429) && response.headers.get("retry-after") === null && failures.length < 20) {
      failures.push(`${init.method ?? "GET"} ${path} answered ${response.status} without Retry-After`)
    }
    return { status: response.status, text }
  } catch (error) {
    if (stopping) return null
    count("no answer", `${init.method ?? "GET"} ${path}: ${error instanceof Error ? error.message : String(error)}`)
    if (failures.length < 20) failures.push(`${init.method ?? "GET"} ${path} got no answer: ${error instanceof Error ? error.message : String(error)}`)
    return null
  }
}

const admin = async (path: string, body?: unknown) => {
  const response = await fetch(`${baseUrl}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { ...json(adminToken, body), connection: "close" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  if (response.status >= 300) throw new Error(`${path} answered ${response.status}: ${text}`)
  return JSON.parse(text) as Record<string, any>
}

const tenant = await admin("/v1/admin/tenants", { name: "soak" })
const apiKey = tenant["api_key"] as string
const sessions: Array<string> = []
for (let i = 0; i < 20; i++) {
  const created = await fetch(`${baseUrl}/v1/sessions`, { method: "POST", headers: { ...json(apiKey, {}), connection: "close" }, body: JSON.stringify({ title: `soak ${i}` }) })
  sessions.push(((await created.json()) as { id: string }).id)
}

const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]!
const someSession = () => pick(sessions)

const mcpMeta = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientInfo": { name: "soak", version: "1" },
  "io.modelcontextprotocol/clientCapabilities": {}
}

/** A tool call in the stateless revision; a tool's failure is a result, so a defect is found in the body. */
const mcpTool = async (name: string, args: Record<string, unknown>) => {
  const answer = await call("/mcp", {
    method: "POST",
    headers: {
      ...json(apiKey, {}),
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": name
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args, _meta: mcpMeta } })
  })
  if (answer === null || !answer.text.includes('"isError":true')) return
  // A tool's failure is a problem object inside the result: counted by its code (a defect's is INTERNAL_ERROR).
  const code = /"code":"([A-Z_]+)"/.exec(answer.text)?.[1] ?? "?"
  count(`mcp ${code}`, `tools/call ${name}: ${answer.text.slice(0, 300)}`, true)
}

/** The mix, by weight. */
const operations: ReadonlyArray<readonly [number, () => Promise<unknown>]> = [
  [30, () => call(`/v1/sessions/${someSession()}`, { headers: json(apiKey) })],
  [10, () => call(`/v1/sessions/${someSession()}/messages?limit=20`, { headers: json(apiKey) })],
  [15, () => call(`/v1/sessions/${someSession()}/messages`, { method: "POST", headers: json(apiKey, {}), body: JSON.stringify({ agent_id: "soak", content: `hello ${Date.now()}` }) })],
  [8, () => call(`/v1/sessions/${crypto.randomUUID()}`, { headers: json(apiKey) })],
  [8, () => call(`/v1/sessions/${someSession()}/memory/k${Math.floor(Math.random() * 50)}`, { method: "PUT", headers: json(apiKey, {}), body: JSON.stringify({ value: { at: Date.now() }, ttl_seconds: 1 + Math.floor(Math.random() * 5) }) })],
  [8, () => call(`/v1/sessions/${someSession()}/memory/k${Math.floor(Math.random() * 50)}`, { headers: json(apiKey) })],
  [3, () => call(`/v1/sessions/${someSession()}/memory`, { headers: json(apiKey) })],
  [6, () => call("/v1/sessions", { headers: json(`bk_${randomBytes(32).toString("base64url")}`) })],
  [2, () => call("/v1/sessions", { headers: {} })],
  [4, () => mcpTool("get_session", { session_id: someSession() })],
  [3, () => mcpTool("post_message", { session_id: someSession(), agent_id: "soak-mcp", content: "over mcp" })],
  [3, () => mcpTool("set_memory", { session_id: someSession(), key: "mcp", value: 1, ttl_seconds: 2 })]
]
const totalWeight = operations.reduce((sum, [weight]) => sum + weight, 0)
const nextOperation = () => {
  let roll = Math.random() * totalWeight
  for (const [weight, run] of operations) {
    roll -= weight
    if (roll < 0) return run
  }
  return operations[0]![1]
}

let trafficOn = true
const worker = async () => {
  while (trafficOn) await nextOperation()()
}

// ---------------------------------------------------------------------------------------------
// Event streams that come and go

let streamsSeen = 0
const streamSlot = async () => {
  while (trafficOn) {
    const controller = new AbortController()
    const lifetime = 2000 + Math.random() * 18_000
    const timer = setTimeout(() => controller.abort(), lifetime)
    try {
      const response = await fetch(`${baseUrl}/v1/sessions/${someSession()}/events`, { headers: json(apiKey), signal: controller.signal })
      if (response.status === 200 && response.body !== null) {
        count("200", "GET events → 200")
        streamsSeen++
        const reader = response.body.getReader()
        while (!(await reader.read()).done) {
          if (!trafficOn) controller.abort()
        }
      } else {
        const text = await response.text()
        const code = response.status >= 500 ? /"code":"([A-Z_]+)"/.exec(text)?.[1] : undefined
        count(code === undefined ? String(response.status) : `${response.status} ${code}`, `GET events → ${response.status} ${text.slice(0, 300)}`)
        await Bun.sleep(200)
      }
    } catch (error) {
      // Our own abort ends a stream; anything else is a stream the server broke.
      if (!controller.signal.aborted && !stopping) {
        count("no answer", `events: ${error instanceof Error ? error.message : String(error)}`)
        if (failures.length < 20) failures.push(`an event stream failed: ${error instanceof Error ? error.message : String(error)}`)
      }
    } finally {
      clearTimeout(timer)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What the server reports

const metricsText = async () => {
  // Not kept alive: the soak's own polling must not hold a connection the descriptor check would count.
  const response = await fetch(`${baseUrl}/metrics`, { headers: { ...json(adminToken), connection: "close" } })
  return response.text()
}

const gauge = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, "m").exec(text)?.[1] ?? NaN)

/** Cumulative bucket counts of the loop-delay histogram, by upper bound in seconds. */
const loopBuckets = (text: string): Map<number, number> => {
  const buckets = new Map<number, number>()
  for (const match of text.matchAll(/^bulwark_event_loop_delay_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} ([0-9.eE+-]+)$/gm)) {
    buckets.set(match[1] === "+Inf" ? Infinity : Number(match[1]), Number(match[2]))
  }
  return buckets
}

/** The p99 of the interval from two cumulative snapshots, as the bucket bound it falls under. */
const loopP99 = (before: Map<number, number>, after: Map<number, number>): string => {
  const bounds = [...after.keys()].sort((a, b) => a - b)
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0)
  if (total <= 0) return "n/a"
  for (const bound of bounds) {
    if ((after.get(bound) ?? 0) - (before.get(bound) ?? 0) >= total * 0.99) return bound === Infinity ? "> 2.5 s" : `≤ ${Math.round(bound * 1000)} ms`
  }
  return "n/a"
}

const descriptors = () => readdirSync(`/proc/${server.pid}/fd`).length

/** What each descriptor is (a file's path, `socket:[inode]`, ...), to name the ones a run left open. */
const descriptorTargets = (): Array<string> =>
  readdirSync(`/proc/${server.pid}/fd`).flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${server.pid}/fd/${fd}`)]
    } catch {
      // Closed between the listing and the read: not open, so not listed.
      return []
    }
  })

/** Local and remote ports of the server's TCP sockets by inode, to say what a left-open socket is. */
const socketsByInode = (): Map<string, string> => {
  const sockets = new Map<string, string>()
  for (const table of ["tcp", "tcp6"]) {
    let text = ""
    try {
      text = readFileSync(`/proc/${server.pid}/net/${table}`, "utf8")
    } catch {
      continue
    }
    for (const line of text.trim().split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      const port = (address: string) => Number.parseInt(address.split(":")[1] ?? "0", 16)
      sockets.set(fields[9] ?? "", `tcp ${port(fields[1] ?? "")} → ${port(fields[2] ?? "")}`)
    }
  }
  return sockets
}

const describeNewDescriptors = (before: ReadonlyArray<string>): string => {
  const remaining = [...before]
  const sockets = socketsByInode()
  const added = descriptorTargets().filter((target) => {
    const index = remaining.indexOf(target)
    if (index === -1) return true
    remaining.splice(index, 1)
    return false
  })
  return added.map((target) => {
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    return inode === undefined ? target : `${target} (${sockets.get(inode) ?? "not TCP"})`
  }).join(", ")
}

// ---------------------------------------------------------------------------------------------
// Faults, midway

const pauseRedis = async (millis: number) => {
  await redis!.cli("CLIENT", "PAUSE", String(millis), "ALL")
}

/** Another connection holds the write lock (readers in WAL mode still read) for `millis`. */
const lockDatabase = async (millis: number) => {
  const holder = new Database(databaseFile)
  try {
    // The server writes all the time: wait for its transaction to end rather than fail to lock.
    holder.run("PRAGMA busy_timeout = 5000")
    holder.run("BEGIN EXCLUSIVE")
    await Bun.sleep(millis)
    holder.run("ROLLBACK")
  } finally {
    holder.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The run

const rows: Array<string> = []
const header = "| minute | RSS (MB, median) | open fds | open streams | loop delay p99 | req/s | answers by status | fault |"
const separator = "| --- | --- | --- | --- | --- | --- | --- | --- |"

// The first time another connection holds the write lock SQLite opens the WAL file once more (and
// keeps it: the same one descriptor however many locks follow), and the first error line is written:
// one short lock before the baseline, so that the check finds leaks, not those one-offs.
{
  const holder = new Database(databaseFile)
  holder.run("BEGIN EXCLUSIVE")
  const refused = await fetch(`${baseUrl}/v1/sessions/${sessions[0]}/messages`, {
    method: "POST",
    headers: { ...json(apiKey, {}), connection: "close" },
    body: JSON.stringify({ agent_id: "soak", content: "under the first lock" })
  })
  await refused.text()
  holder.run("ROLLBACK")
  holder.close()
  progress(`rehearsal: a write under the lock answered ${refused.status}`)
  // Past the database breaker's open time, should the rehearsal have opened it.
  await Bun.sleep(6000)
}
const baselineDescriptors = descriptors()
const baselineTargets = descriptorTargets()
const baselineMetrics = await metricsText()
const baselineStreams = gauge(baselineMetrics, "bulwark_event_streams_open") || 0
progress(`server pid ${server.pid} on ${baseUrl}, ${minutes} min, ${workers} request loops, ${streamSlots} stream slots; baseline ${baselineDescriptors} fds, ${baselineStreams} streams`)

const faultsDone: Array<string> = []
/** Each fault's end, to tell how long the 503s outlasted it (read once the next fault starts, or at the end). */
const recoveries: Array<string> = []
let faultEndedAt: number | undefined
let endedFault = ""
const noteRecovery = () => {
  if (faultEndedAt === undefined) return
  const after = lastServerErrorAt - faultEndedAt
  recoveries.push(`${endedFault}: ${after <= 0 ? "no 5xx after it ended" : `last 5xx ${(after / 1000).toFixed(1)} s after it ended`}`)
  faultEndedAt = undefined
}
let faultNote = ""
const runFaults = async () => {
  // Redis at 40% of the run, the database lock at 60%; each long enough to be felt (past the cache's
  // timeout, past the database's retry budget) and short against the run.
  const faultMillis = Math.min(10_000, Math.max(3000, totalMillis / 30))
  await Bun.sleep(totalMillis * 0.4)
  if (!trafficOn) return
  faultNote = `Redis paused ${(faultMillis / 1000).toFixed(0)} s`
  progress(faultNote)
  await pauseRedis(faultMillis)
  faultsDone.push(faultNote)
  endedFault = faultNote
  await Bun.sleep(faultMillis)
  faultEndedAt = performance.now()
  await Bun.sleep(totalMillis * 0.2 - faultMillis)
  if (!trafficOn) return
  noteRecovery()
  const note = `SQLite BEGIN EXCLUSIVE ${(faultMillis / 1000).toFixed(0)} s`
  faultNote = faultNote === "" ? note : `${faultNote}; ${note}`
  progress(note)
  await lockDatabase(faultMillis)
  faultsDone.push(note)
  endedFault = note
  faultEndedAt = performance.now()
}

const loops = [
  ...Array.from({ length: workers }, worker),
  ...Array.from({ length: streamSlots }, streamSlot),
  runFaults()
]

let warmRss = NaN
let lastRss = NaN
let peakRss = 0
// One reading of RSS lands anywhere in the collector's cycle: every interval is read every 2 s, and
// its median is what is shown and compared.
const RSS_EVERY_MILLIS = 2000
let rssSamples: Array<number> = []
const rssSampler = setInterval(() => {
  if (server.exitCode === null && server.signalCode === null) rssSamples.push(rssMegabytes(server.pid))
}, RSS_EVERY_MILLIS)
const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
let previousBuckets = loopBuckets(baselineMetrics)
const intervals = Math.max(1, Math.round(totalMillis / intervalMillis))
for (let index = 1; index <= intervals; index++) {
  const intervalStart = performance.now()
  await Bun.sleep(intervalMillis)
  if (server.exitCode !== null || server.signalCode !== null) {
    failures.push(`the server exited (${server.exitCode ?? server.signalCode}) during interval ${index}`)
    break
  }
  const seen = tally
  tally = newTally()
  const elapsedSeconds = (performance.now() - intervalStart) / 1000
  const text = await metricsText()
  const buckets = loopBuckets(text)
  const rss = median(rssSamples.length === 0 ? [rssMegabytes(server.pid)] : rssSamples)
  peakRss = Math.max(peakRss, ...rssSamples)
  rssSamples = []
  if (Number.isNaN(warmRss) && index * intervalMillis >= WARMUP_MILLIS) warmRss = rss
  lastRss = rss
  const statuses = [...seen.statuses.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => `${status}: ${n}`).join(", ")
  const row = `| ${((index * intervalMillis) / 60_000).toFixed(intervalSeconds % 60 === 0 ? 0 : 1)} | ${rss.toFixed(0)} | ${descriptors()} | ${gauge(text, "bulwark_event_streams_open")} | ${loopP99(previousBuckets, buckets)} | ${(seen.requests / elapsedSeconds).toFixed(0)} | ${statuses} | ${faultNote} |`
  faultNote = ""
  previousBuckets = buckets
  rows.push(row)
  progress(row)
}

trafficOn = false
clearInterval(rssSampler)
await Promise.all(loops)
noteRecovery()
const endTally = tally

// Once the traffic stops every stream must close and every descriptor it opened be released.
const settleStartedAt = performance.now()
let endStreams = NaN
let endDescriptors = NaN
while (performance.now() - settleStartedAt < SETTLE_MILLIS) {
  endStreams = gauge(await metricsText(), "bulwark_event_streams_open")
  endDescriptors = descriptors()
  if (endStreams <= baselineStreams && endDescriptors <= baselineDescriptors) break
  await Bun.sleep(500)
}
const endRss = rssMegabytes(server.pid)

const fiveHundreds = rows.join("\n").match(/\b500[A-Z_ ]*: \d+|mcp INTERNAL_ERROR: \d+/g) ?? []
for (const [label, n] of endTally.statuses) if (label.startsWith("500") || label === "mcp INTERNAL_ERROR") fiveHundreds.push(`${label}: ${n}`)
if (fiveHundreds.length > 0) failures.push(`500s appeared (${fiveHundreds.join(", ")}); first: ${samplesOf500.join(" | ")}`)
if (!Number.isNaN(warmRss) && lastRss > warmRss * (1 + RSS_GROWTH_LIMIT)) {
  failures.push(`RSS grew ${(((lastRss - warmRss) / warmRss) * 100).toFixed(1)}% after the warm-up (interval medians, ${warmRss.toFixed(0)} → ${lastRss.toFixed(0)} MB; limit ${RSS_GROWTH_LIMIT * 100}%)`)
}
if (!(endStreams <= baselineStreams)) failures.push(`open event streams did not return to ${baselineStreams} (${endStreams} after ${SETTLE_MILLIS / 1000} s)`)
if (!(endDescriptors <= baselineDescriptors)) {
  failures.push(`open descriptors did not return to ${baselineDescriptors} (${endDescriptors} after ${SETTLE_MILLIS / 1000} s; new: ${describeNewDescriptors(baselineTargets)}; Redis on ${redis.port}, server on ${port})`)
}
if (faultsDone.length < 2) failures.push(`not every fault was injected (${faultsDone.join(", ") || "none"})`)

console.log([header, separator, ...rows].join("\n"))
console.log(
  `\n${minutes} min, ${workers} request loops and ${streamSlots} event-stream slots (${streamsSeen} streams opened), SQLite file and a Redis of its own; ` +
    `faults: ${faultsDone.join(", ")} (${recoveries.join("; ")}). RSS (median of the interval) ${warmRss.toFixed(0)} MB at the end of the warm-up, ${lastRss.toFixed(0)} MB in the last interval, peak ${peakRss.toFixed(0)} MB, ` +
    `${endRss.toFixed(0)} MB idle at the end; descriptors ${baselineDescriptors} before, ${endDescriptors} after; streams ${baselineStreams} before, ${endStreams} after.`
)
if (failures.length > 0) {
  console.log(`\nFAILED:\n${failures.map((failure) => `- ${failure}`).join("\n")}`)
  console.error(`server log (last lines):\n${tailOf(logFile, 30)}`)
} else {
  console.log("\npassed: no 500, RSS within 10% of the warm-up, descriptors and streams back to their baseline")
}
await stopProcess(server)
await cleanUp()
process.exit(failures.length > 0 ? 1 : 0)
