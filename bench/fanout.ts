/**
 * Live fan-out (SPEC §9, the event streams' targets): Bulwark as `bun start` runs it (SQLite, no
 * Redis), its clients raw HTTP/1.1 sockets in this process, which only look for each event's `id:`.
 *
 * 1. One session, 1,000 subscribers: each message is posted through the API and timed from the
 *    post's start to its arrival at every subscriber (p50, p99, the last one).
 * 2. 10,000 streams over 1,000 sessions: the server's RSS per open stream, a hot read's latency
 *    before, while they connect and while they are open, one message to 100 of the sessions reaching
 *    all their streams, and the RSS once every stream has closed.
 *
 *   bun bench/fanout.ts            (after `bun run build`; `bun run bench` runs it at the end)
 *
 * Settings (environment): FANOUT_SUBSCRIBERS (1000), FANOUT_MESSAGES (20), FANOUT_STREAMS (10000),
 * FANOUT_SESSIONS (1000).
 */
import type { Socket } from "bun"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, rssMegabytes, runToEnd, spawnServer, stopAll, stopProcess, waitForReady } from "./processes.js"
import { type BenchPostgres, DEFAULT_POSTGRES_URL, openBenchPostgres } from "./postgres.js"
import { startBulwark, type Target } from "./targets.js"

/** What the scenarios need of a server. */
type FanoutTarget = Pick<Target, "baseUrl" | "apiKey" | "sessionId" | "process" | "adminToken">

const number = (name: string, fallback: number) => {
  const raw = process.env[name]
  const value = raw === undefined || raw === "" ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}: expected a whole number, got "${raw}"`)
  return value
}

const progress = (message: string) => console.error(`fanout: ${message}`)

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN

const summary = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN }
}

const ms = (value: number) => `${value.toFixed(1)} ms`

/** CPU time (user + system) a process has used, in ms, from /proc (Linux): unlike wall time, not inflated by a busy machine. */
const cpuMillis = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

/** An SSE client on a raw socket: calls `onEvent` with each event's `id` as it arrives. */
interface StreamClient {
  readonly socket: Socket
  lastSeq: number
}

const openStream = (base: URL, path: string, apiKey: string, onEvent: (client: StreamClient, seq: number) => void) =>
  new Promise<StreamClient>((resolve, reject) => {
    let opened = false
    let tail = ""
    const client = { lastSeq: 0 } as { socket: Socket; lastSeq: number }
    void Bun.connect({
      hostname: base.hostname,
      port: Number(base.port),
      socket: {
        open: (socket) => {
          client.socket = socket
          socket.write(`GET ${path} HTTP/1.1\r\nHost: ${base.host}\r\nAuthorization: Bearer ${apiKey}\r\nAccept: text/event-stream\r\n\r\n`)
        },
        data: (_socket, data) => {
          const text = tail + data.toString("latin1")
          if (!opened) {
            if (!text.startsWith("HTTP/1.1 200")) return reject(new Error(`stream answered: ${text.slice(0, 200)}`))
            opened = true
            resolve(client)
          }
          const pattern = /\nid: (\d+)\n/g
          let match: RegExpExecArray | null
          while ((match = pattern.exec(text)) !== null) {
            const seq = Number(match[1])
            if (seq > client.lastSeq) {
              client.lastSeq = seq
              onEvent(client, seq)
            }
          }
          tail = text.slice(-24)
        },
        error: (_socket, error) => reject(error),
        connectError: (_socket, error) => reject(error)
      }
    }).catch(reject)
  })

/** Runs `work` over `items`, at most `concurrency` at a time. */
const inBatches = async <A, B>(items: ReadonlyArray<A>, concurrency: number, work: (item: A) => Promise<B>): Promise<Array<B>> => {
  const results: Array<B> = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index]!)
    }
  }))
  return results
}

const api = (target: FanoutTarget) => async (path: string, init: RequestInit = {}) => {
  const response = await fetch(`${target.baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json", ...init.headers }
  })
  const body = await response.text()
  return { status: response.status, body }
}

const openStreams = async (target: FanoutTarget) => {
  const text = await (await fetch(`${target.baseUrl}/metrics`, { headers: { authorization: `Bearer ${target.adminToken}` } })).text()
  return Number(/^bulwark_event_streams_open (\d+)/m.exec(text)?.[1] ?? "0")
}

const waitFor = async (what: string, condition: () => Promise<boolean> | boolean, timeoutMillis = 60_000) => {
  const deadline = performance.now() + timeoutMillis
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMillis} ms`)
    await Bun.sleep(20)
  }
}

/** Hot reads (`GET /v1/sessions/{id}`), 8 at a time from a process of their own, while `during` runs (or `count` of them): their latencies. */
const hotReads = async (target: FanoutTarget, count: number, during?: Promise<unknown>) => {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "hotReads.ts")], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", URL: `${target.baseUrl}/v1/sessions/${target.sessionId}`, KEY: target.apiKey, COUNT: String(count) },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit"
  })
  if (during !== undefined) {
    await during.catch(() => undefined)
    child.stdin.write("stop\n")
    await child.stdin.end()
  }
  const output = await new Response(child.stdout).text()
  if ((await child.exited) !== 0) throw new Error(`the hot reads failed: ${output}`)
  return summary(JSON.parse(output) as Array<number>)
}

const oneSession = async (label: string, target: FanoutTarget, subscribers: number, messages: number, lines: Array<string>) => {
  const call = api(target)
  const base = new URL(target.baseUrl)
  const created = await call("/v1/sessions", { method: "POST", body: JSON.stringify({ title: "fan-out" }) })
  const sessionId = (JSON.parse(created.body) as { id: string }).id
  const postedAt = new Map<number, number>()
  const arrivals = new Map<number, Array<number>>()
  const onEvent = (_client: StreamClient, seq: number) => {
    const at = postedAt.get(seq)
    if (at !== undefined) arrivals.get(seq)!.push(performance.now() - at)
  }
  const rssBefore = rssMegabytes(target.process.pid)
  const clients = await inBatches(Array.from({ length: subscribers }), 50, () =>
    openStream(base, `/v1/sessions/${sessionId}/events`, target.apiKey, onEvent))
  await waitFor(`${subscribers} streams open`, async () => (await openStreams(target)) >= subscribers)
  const rssOpen = rssMegabytes(target.process.pid)
  progress(`${subscribers} subscribers on one session`)

  const reachAll: Array<number> = []
  const all: Array<number> = []
  for (let i = 0; i <= messages; i++) {
    const arrived: Array<number> = []
    const startedAt = performance.now()
    // The post's own seq is only known from its answer: the next one is announced before then.
    const seq = i + 1
    postedAt.set(seq, startedAt)
    arrivals.set(seq, arrived)
    const posted = await call(`/v1/sessions/${sessionId}/messages`, { method: "POST", body: JSON.stringify({ agent_id: "bench", content: `message ${seq}` }) })
    if (posted.status !== 201) throw new Error(`post answered ${posted.status}: ${posted.body}`)
    await waitFor(`message ${seq} at every subscriber`, () => arrived.length >= subscribers, 30_000)
    // The first message warms the path up and is not counted.
    if (i > 0) {
      reachAll.push(Math.max(...arrived))
      all.push(...arrived)
    }
    await Bun.sleep(50)
  }
  const rssAfterMessages = rssMegabytes(target.process.pid)
  for (const client of clients) client.socket.end()
  await waitFor("every stream closed", async () => (await openStreams(target)) === 0)
  const each = summary(all)
  const whole = summary(reachAll)
  lines.push(
    `| ${label} | one session, ${subscribers} subscribers, ${messages} messages | post → each subscriber: p50 ${ms(each.p50)}, p99 ${ms(each.p99)}, max ${ms(each.max)}; ` +
      `post → last subscriber: median ${ms(whole.p50)}, worst ${ms(whole.max)} | RSS ${rssBefore.toFixed(0)} MB before, ${rssOpen.toFixed(0)} MB open, ` +
      `${rssAfterMessages.toFixed(0)} MB after the messages |`
  )
  return { p99: each.p99 }
}

const manySessions = async (label: string, target: FanoutTarget, streams: number, sessions: number, lines: Array<string>) => {
  const call = api(target)
  const base = new URL(target.baseUrl)
  const sessionIds = await inBatches(Array.from({ length: sessions }), 16, async () => {
    const created = await call("/v1/sessions", { method: "POST", body: "{}" })
    return (JSON.parse(created.body) as { id: string }).id
  })
  const received = new Map<StreamClient, number>()
  const onEvent = (client: StreamClient, seq: number) => void received.set(client, seq)
  await Bun.sleep(1000)
  const rssBefore = rssMegabytes(target.process.pid)
  const quiet = await hotReads(target, 2000)

  const connecting = inBatches(Array.from({ length: streams }, (_, index) => sessionIds[index % sessions]!), 100, (sessionId) =>
    openStream(base, `/v1/sessions/${sessionId}/events`, target.apiKey, onEvent).then((client) => ({ client, sessionId })))
  const connectStartedAt = performance.now()
  const cpuBefore = cpuMillis(target.process.pid)
  const whileConnecting = await hotReads(target, 0, connecting)
  const clients = await connecting
  const connectMillis = performance.now() - connectStartedAt
  const cpuPerOpen = (cpuMillis(target.process.pid) - cpuBefore) / streams
  await waitFor(`${streams} streams open`, async () => (await openStreams(target)) >= streams)
  await Bun.sleep(1000)
  const rssOpen = rssMegabytes(target.process.pid)
  const whileOpen = await hotReads(target, 2000)
  progress(`${streams} streams over ${sessions} sessions open`)

  const targeted = sessionIds.slice(0, Math.min(100, sessions))
  const startedAt = performance.now()
  await inBatches(targeted, 8, (sessionId) => call(`/v1/sessions/${sessionId}/messages`, { method: "POST", body: JSON.stringify({ agent_id: "bench", content: "hello" }) }))
  const expected = clients.filter(({ sessionId }) => targeted.includes(sessionId))
  await waitFor("the messages at every stream of their sessions", () => expected.every(({ client }) => received.get(client) === 1), 30_000)
  const deliveredMillis = performance.now() - startedAt
  const strays = clients.filter(({ client, sessionId }) => !targeted.includes(sessionId) && received.has(client)).length

  for (const { client } of clients) client.socket.end()
  await waitFor("every stream closed", async () => (await openStreams(target)) === 0)
  await Bun.sleep(3000)
  const rssClosed = rssMegabytes(target.process.pid)
  const perStream = ((rssOpen - rssBefore) * 1024) / streams
  lines.push(
    `| ${label} | ${streams} streams over ${sessions} sessions | RSS ${rssBefore.toFixed(0)} MB before, ${rssOpen.toFixed(0)} MB open (${perStream.toFixed(1)} KB per stream), ` +
      `${rssClosed.toFixed(0)} MB 3 s after all closed; one message to each of ${targeted.length} sessions reached their ${expected.length} streams in ${ms(deliveredMillis)}` +
      `${strays === 0 ? "" : `, ${strays} streams of other sessions got one`} | hot read p50 / p99: ${ms(quiet.p50)} / ${ms(quiet.p99)} before, ` +
      `${ms(whileConnecting.p50)} / ${ms(whileConnecting.p99)} while they connected (${ms(connectMillis)}, ${cpuPerOpen.toFixed(2)} ms of server CPU per stream opened, hot reads included), ${ms(whileOpen.p50)} / ${ms(whileOpen.p99)} with them open |`
  )
  return { perStream }
}

/** The broadcaster floor (`bench/reference/broadcast.ts`) on the same core. */
const startBroadcaster = async (repoRoot: string, workDir: string, core: number | null): Promise<FanoutTarget> => {
  const port = freePort()
  const startedAt = performance.now()
  const child = spawnServer([process.execPath, join(repoRoot, "bench/reference/broadcast.ts")], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", PORT: String(port) },
    logFile: join(workDir, "broadcast.log"),
    core
  })
  await waitForReady(`http://127.0.0.1:${port}/health/ready`, child, startedAt)
  return { baseUrl: `http://127.0.0.1:${port}`, apiKey: "none", sessionId: crypto.randomUUID(), process: child, adminToken: "none" }
}

/**
 * Runs both scenarios against a Bulwark of its own on SQLite, then on PostgreSQL when `postgres` is
 * given (no Redis there either: its streams also check the database every second), then against the
 * broadcaster; answers the markdown.
 */
export const runFanout = async (options: {
  readonly repoRoot: string
  readonly bulwarkDir: string
  readonly core: number | null
  readonly postgres: BenchPostgres | null
}): Promise<string> => {
  const workDir = mkdtempSync(join(tmpdir(), "bulwark-fanout-"))
  const subscribers = number("FANOUT_SUBSCRIBERS", 1000)
  const messages = number("FANOUT_MESSAGES", 20)
  const streams = number("FANOUT_STREAMS", 10_000)
  const sessions = number("FANOUT_SESSIONS", 1000)
  try {
    const lines = [
      "| server | scenario | delivery | memory and other requests |",
      "| --- | --- | --- | --- |"
    ]
    const context = { ...options, workDir, sessionId: crypto.randomUUID() }
    const bulwark = await startBulwark(context, { id: "bulwark" })
    const one = await oneSession("Bulwark, SQLite", bulwark, subscribers, messages, lines)
    const many = await manySessions("Bulwark, SQLite", bulwark, streams, sessions, lines)
    await stopProcess(bulwark.process)
    if (options.postgres !== null) {
      const onPostgres = await startBulwark(context, { id: "bulwark-pg" })
      await oneSession("Bulwark, PostgreSQL", onPostgres, subscribers, messages, lines)
      await manySessions("Bulwark, PostgreSQL", onPostgres, streams, sessions, lines)
      await stopProcess(onPostgres.process)
    }
    const floor = await startBroadcaster(options.repoRoot, workDir, options.core)
    await oneSession("Bun.serve broadcaster", floor, subscribers, messages, lines)
    await manySessions("Bun.serve broadcaster", floor, streams, sessions, lines)
    await stopProcess(floor.process)
    lines.push(
      "",
      `Bulwark on SQLite against the targets: p99 post → subscriber ≤ 100 ms: ${one.p99 <= 100 ? "met" : "not met"} (${ms(one.p99)}); ` +
        `≤ 25 KB per open stream: ${many.perStream <= 25 ? "met" : "not met"} (${many.perStream.toFixed(1)} KB). ` +
        "Bulwark: in-process cache (no Redis), `bun start`'s build. The broadcaster does no authentication, storage or catch-up: the transport's floor. " +
        "Clients are raw sockets in the harness process; servers are pinned to their own core when taskset is there. " +
        "Memory is the server's RSS, so it includes garbage not yet collected."
    )
    return lines.join("\n")
  } finally {
    await stopAll()
    rmSync(workDir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  const repoRoot = join(import.meta.dir, "..")
  const pin = Bun.which("taskset") !== null && availableParallelism() >= 2
  if (pin) await runToEnd(["taskset", "-cp", "1", String(process.pid)], { core: null, env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" } })
  // FANOUT_DATABASES: `sqlite` (the default) or `sqlite,postgres` (BENCH_POSTGRES_URL, the loopback server by default).
  const postgres = (process.env["FANOUT_DATABASES"] ?? "sqlite").includes("postgres")
    ? await openBenchPostgres(process.env["BENCH_POSTGRES_URL"] || DEFAULT_POSTGRES_URL)
    : null
  try {
    console.log(await runFanout({ repoRoot, bulwarkDir: repoRoot, core: pin ? 0 : null, postgres }))
  } catch (error) {
    console.error(`fanout failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
    await stopAll()
    await postgres?.dropAll()
    process.exit(1)
  }
  await postgres?.dropAll()
}
