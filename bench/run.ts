/**
 * `bun run bench` (SPEC §9): times Bulwark's start-up alone (BENCH_STARTS times per database, each on
 * a new database), then starts Bulwark, Bulwark with an unreachable Redis, and the two reference
 * servers on SQLite, then Bulwark and the two references again on PostgreSQL, each in a database of
 * its own; drives them alternately with wrk on loopback, round after round; prints the table and
 * writes it to bench/results/latest.md (and every run to latest.json).
 *
 * Settings (environment): BENCH_DURATION seconds per run (5), BENCH_WARMUP seconds before each
 * run (2), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_STARTS (5), BENCH_BULWARK_DIR the Bulwark checkout to
 * start (this repository; another checkout compares two versions against the same references),
 * BENCH_DATABASES (`sqlite,postgres`), BENCH_POSTGRES_URL (the loopback PostgreSQL).
 * Last, the live fan-out scenarios of bench/fanout.ts (its own FANOUT_* settings).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { runFanout } from "./fanout.js"
import { type BenchPostgres, DEFAULT_POSTGRES_URL, openBenchPostgres } from "./postgres.js"
import { freePort, runToEnd, rssMegabytes, stopAll } from "./processes.js"
import { buildReport, type Measurement, type ProcessStats, renderMarkdown, SETTLE_SECONDS, type StartupTimes } from "./report.js"
import { type BenchDatabase, type Scenario, scenarios as defineScenarios } from "./scenarios.js"
import {
  describeCacheHealth,
  type StartContext,
  startBulwark,
  startReference,
  TARGET_LABELS,
  timeBulwarkStart,
  type Target,
  type TargetId,
  UNTHROTTLED_RATE_LIMIT
} from "./targets.js"
import { POOL_SIZE } from "./reference/pgStore.js"
import { isWrkInstalled, runWrk, sendOnce, type WrkRequest, type WrkSettings } from "./wrk.js"

const BENCH_DIR = import.meta.dir
const REPO_ROOT = join(BENCH_DIR, "..")
const RESULTS_DIR = join(BENCH_DIR, "results")

interface Settings {
  readonly durationSeconds: number
  readonly warmupSeconds: number
  readonly rounds: number
  readonly connections: number
  /** Starts timed alone per database, before the runs; the start-up goal is their median. */
  readonly starts: number
  readonly bulwarkDir: string
  readonly databases: ReadonlyArray<BenchDatabase>
  readonly postgresUrl: string
  /** Servers on one core, wrk on another, when taskset exists and there are two cores. */
  readonly cores: { readonly server: number; readonly load: number } | null
}

const fail = (message: string): never => {
  console.error(message)
  process.exit(1)
}

const wholeNumberFromEnv = (name: string, fallback: number, minimum: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  return Number.isInteger(value) && value >= minimum ? value : fail(`${name}: expected a whole number, at least ${minimum}; got "${raw}"`)
}

const BENCH_DATABASES: ReadonlyArray<BenchDatabase> = ["sqlite", "postgres"]

const databasesFromEnv = (): ReadonlyArray<BenchDatabase> => {
  const raw = process.env["BENCH_DATABASES"]
  if (raw === undefined || raw.trim() === "") return BENCH_DATABASES
  const named = raw.split(",").map((name) => name.trim())
  const unknown = named.filter((name) => !(BENCH_DATABASES as ReadonlyArray<string>).includes(name))
  if (unknown.length > 0 || named.length === 0) fail(`BENCH_DATABASES: expected a comma-separated list of sqlite, postgres; got "${raw}"`)
  return BENCH_DATABASES.filter((database) => named.includes(database))
}

const readSettings = (): Settings => ({
  durationSeconds: wholeNumberFromEnv("BENCH_DURATION", 5, 1),
  warmupSeconds: wholeNumberFromEnv("BENCH_WARMUP", 2, 0),
  rounds: wholeNumberFromEnv("BENCH_ROUNDS", 3, 1),
  connections: wholeNumberFromEnv("BENCH_CONNECTIONS", 32, 1),
  starts: wholeNumberFromEnv("BENCH_STARTS", 5, 1),
  bulwarkDir: resolve(process.env["BENCH_BULWARK_DIR"] || REPO_ROOT),
  databases: databasesFromEnv(),
  postgresUrl: process.env["BENCH_POSTGRES_URL"] || DEFAULT_POSTGRES_URL,
  cores: Bun.which("taskset") !== null && availableParallelism() >= 2 ? { server: 0, load: 1 } : null
})

const progress = (message: string): void => {
  console.error(`bench: ${message}`)
}

/**
 * Bulwark's start-up alone, `count` times per database, alternating between them, before any server
 * of the runs is up: each on a new database, stopped once ready.
 */
const timeStarts = async (context: StartContext, databases: ReadonlyArray<BenchDatabase>, count: number): Promise<Array<StartupTimes>> => {
  const ids = databases.map((database) => (database === "sqlite" ? "bulwark" : "bulwark-pg") as "bulwark" | "bulwark-pg")
  const times = new Map(ids.map((id) => [id, [] as Array<number>]))
  for (let attempt = 1; attempt <= count; attempt++) {
    for (const id of ids) {
      const millis = await timeBulwarkStart(context, id, attempt)
      times.get(id)!.push(millis)
      progress(`${TARGET_LABELS[id]} start ${attempt}/${count}: ready in ${Math.round(millis)} ms`)
    }
  }
  return ids.map((id) => ({ targetId: id, millis: times.get(id)! }))
}

/** One after the other, so that each start-up time is measured on a quiet machine. */
const startTargets = async (context: StartContext, databases: ReadonlyArray<BenchDatabase>): Promise<Map<TargetId, Target>> => {
  const targets = new Map<TargetId, Target>()
  const started = (target: Target) => {
    targets.set(target.id, target)
    progress(`${TARGET_LABELS[target.id]} ready in ${Math.round(target.startupMillis)} ms on ${target.baseUrl}`)
  }
  if (databases.includes("sqlite")) {
    started(await startBulwark(context, { id: "bulwark" }))
    // A port nothing listens on: connections are refused at once, as when Redis is down.
    started(await startBulwark(context, { id: "bulwark-redis-down", redisUrl: `redis://127.0.0.1:${freePort()}` }))
    started(await startReference(context, "raw"))
    started(await startReference(context, "hono"))
  }
  if (databases.includes("postgres")) {
    started(await startBulwark(context, { id: "bulwark-pg" }))
    started(await startReference(context, "raw-pg"))
    started(await startReference(context, "hono-pg"))
  }
  return targets
}

const targetOf = (targets: ReadonlyMap<TargetId, Target>, id: TargetId): Target => {
  const target = targets.get(id)
  if (target === undefined) throw new Error(`${id} was not started`)
  return target
}

/** One request before the runs, so that a wrong answer is named (status and problem code) in the notes. */
const probe = async (request: WrkRequest): Promise<{ readonly status: number; readonly code: string | null }> => {
  const response = await sendOnce(request)
  const body = await response.json().catch(() => null) as
    | { code?: unknown; result?: { isError?: unknown; structuredContent?: { code?: unknown } }; error?: { code?: unknown } }
    | null
  // An MCP tool error or JSON-RPC error is a 200 too: its code is what makes the answer wrong.
  const code = body?.result?.isError === true ? body.result.structuredContent?.code : body?.error !== undefined ? `JSON-RPC ${String(body.error.code)}` : body?.code
  return { status: response.status, code: typeof code === "string" ? code : null }
}

const probeAll = async (scenarios: ReadonlyArray<Scenario>, targets: ReadonlyMap<TargetId, Target>): Promise<Array<string>> => {
  const notes: Array<string> = []
  for (const scenario of scenarios) {
    for (const id of scenario.targets) {
      const answer = await probe(scenario.request(targetOf(targets, id)))
      if (answer.status !== scenario.expectedStatus || (scenario.id.includes("mcp-") && answer.code !== null)) {
        const what = `${TARGET_LABELS[id]} answered ${answer.status}${answer.code === null ? "" : ` ${answer.code}`}`
        notes.push(`${scenario.title}: ${what} to the probe before the runs (expected ${scenario.expectedStatus}); such answers are counted as unexpected, never as throughput.`)
        progress(`probe: ${scenario.id} on ${id}: ${answer.status} ${answer.code ?? ""} (expected ${scenario.expectedStatus})`)
      }
    }
  }
  return notes
}

/** The servers that collect their heap in full once a burst of requests is over (Bulwark's `AfterBurst`). */
const COLLECTS_AFTER_BURSTS: ReadonlySet<TargetId> = new Set(["bulwark", "bulwark-redis-down", "bulwark-pg"])

/** Round-robin with the start rotated each round, so no server always runs first or last. */
const rotated = <A>(items: ReadonlyArray<A>, by: number): Array<A> => items.map((_, index) => items[(index + by) % items.length]!)

const measureAll = async (
  settings: Settings,
  scenarios: ReadonlyArray<Scenario>,
  targets: ReadonlyMap<TargetId, Target>
): Promise<Array<Measurement>> => {
  const wrk = (durationSeconds: number): WrkSettings => ({
    durationSeconds,
    connections: settings.connections,
    core: settings.cores?.load ?? null
  })
  const measurements: Array<Measurement> = []
  for (let round = 1; round <= settings.rounds; round++) {
    for (const scenario of scenarios) {
      for (const id of rotated(scenario.targets, round - 1)) {
        const request = scenario.request(targetOf(targets, id))
        if (settings.warmupSeconds > 0) await runWrk(request, wrk(settings.warmupSeconds))
        const result = await runWrk(request, wrk(settings.durationSeconds))
        measurements.push({ round, scenarioId: scenario.id, targetId: id, expectedStatus: scenario.expectedStatus, result })
        const ok = (result.statuses[String(scenario.expectedStatus)] ?? 0) / result.durationSeconds
        progress(
          `round ${round}/${settings.rounds} ${scenario.id} ${id}: ${Math.round(ok)} ok req/s, ` +
            `p50 ${result.latencyMs.p50.toFixed(2)} ms, p99 ${result.latencyMs.p99.toFixed(2)} ms, statuses ${JSON.stringify(result.statuses)}`
        )
        // Bulwark collects its heap 2 s after a burst ends, on the core the servers share: the next
        // server's warm-up waits until that is over, so the collection takes nothing from its run.
        if (COLLECTS_AFTER_BURSTS.has(id)) await Bun.sleep(SETTLE_SECONDS * 1000)
      }
    }
  }
  return measurements
}

const logLinesOf = (path: string): Array<string> => readFileSync(path, "utf8").split("\n").filter((line) => line.trim() !== "")

/** Every server's memory right after the runs, then again once all have gone `SETTLE_SECONDS` without a request. */
const processStats = async (targets: ReadonlyArray<Target>): Promise<Array<ProcessStats>> => {
  const finalRss = targets.map((target) => rssMegabytes(target.process.pid))
  await Bun.sleep(SETTLE_SECONDS * 1000)
  return targets.map((target, i) => {
    const lines = logLinesOf(target.logFile)
    return {
      targetId: target.id,
      startupMillis: target.startupMillis,
      idleRssMb: target.idleRssMb,
      finalRssMb: finalRss[i]!,
      settledRssMb: rssMegabytes(target.process.pid),
      logLines: lines.length,
      droppedLedgerRows: lines.filter((line) => line.startsWith('{"ledger":"dropped"')).length
    }
  })
}

const commandOutput = async (command: ReadonlyArray<string>, cwd: string): Promise<{ readonly ok: boolean; readonly text: string }> => {
  const { exitCode, stdout, stderr } = await runToEnd(command, { cwd, core: null, env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" } })
  return { ok: exitCode === 0, text: (stdout + stderr).trim() }
}

const describeBulwarkVersion = async (bulwarkDir: string): Promise<string> => {
  const where = bulwarkDir === REPO_ROOT ? "" : ` (from ${bulwarkDir})`
  const commit = await commandOutput(["git", "rev-parse", "--short", "HEAD"], bulwarkDir)
  if (!commit.ok) return `Bulwark${where}: not a git checkout`
  const status = await commandOutput(["git", "status", "--porcelain"], bulwarkDir)
  return `Bulwark${where} at commit ${commit.text}${status.text === "" ? "" : " with uncommitted changes"}`
}

const describeMachine = async (settings: Settings, postgres: BenchPostgres | null): Promise<Array<string>> => {
  // wrk has no version flag: it prints its version at the top of its usage text.
  const wrkVersion = (await commandOutput(["wrk", "--version"], REPO_ROOT)).text.split("\n")[0] ?? "wrk"
  const cpu = cpus()[0]?.model ?? "unknown CPU"
  return [
    `${new Date().toISOString()} · ${cpu}, ${availableParallelism()} cores · Bun ${Bun.version} · ${wrkVersion.replace(/ Copyright.*$/, "")}`,
    await describeBulwarkVersion(settings.bulwarkDir),
    `\`wrk -t1 -c${settings.connections} -d${settings.durationSeconds}s --latency\` per run after a ${settings.warmupSeconds} s warm-up; ` +
      `${settings.rounds} rounds, servers alternating within each round; ` +
      (settings.cores === null
        ? "no CPU pinning (taskset missing or one core)"
        : `servers pinned to core ${settings.cores.server}, wrk to core ${settings.cores.load}`),
    `Bulwark: SQLite file, in-process cache, auth, rate limit \`${UNTHROTTLED_RATE_LIMIT}\` (counted, never reached), ` +
      "telemetry (no OTLP endpoint), error ledger, the default log level (`LOG_LEVEL` unset: info, one line per 4xx)",
    postgres === null
      ? "PostgreSQL: not run (BENCH_DATABASES)"
      : `PostgreSQL: ${postgres.description}, a database of its own per server, created for this run; ` +
        `Bulwark and the references with ${POOL_SIZE} connections each; the PostgreSQL server is not pinned and shares both cores`
  ]
}

const writeResults = (markdown: string, raw: unknown): void => {
  mkdirSync(RESULTS_DIR, { recursive: true })
  writeFileSync(join(RESULTS_DIR, "latest.md"), markdown)
  writeFileSync(join(RESULTS_DIR, "latest.json"), JSON.stringify(raw, null, 2) + "\n")
}

const STANDING_NOTES = [
  "ok req/s counts only responses with the expected status; anything else is listed under unexpected. non-2xx/3xx is wrk's own count (for the 404 scenario it is every response).",
  "p50 and p99 are wrk's latency percentiles over all responses of a run; the table shows the median over rounds, and the range of ok req/s over rounds.",
  "The references do the same work per request without middleware: SHA-256 of the key → tenant, tenant-scoped row read (or seq = max + 1 insert in one transaction; on PostgreSQL one statement that bumps the session's last_seq and inserts with it), JSON; RFC 9457 body for failures."
]

/**
 * Bulwark collects its heap in full once a burst of requests has been over for 2 s, on the core
 * the servers share: how often, and the pauses, so that they are in view.
 */
const collectionNotes = (targets: ReadonlyArray<Target>): Array<string> =>
  targets.flatMap((target) => {
    const pauses = logLinesOf(target.logFile).flatMap((line) => {
      if (!line.includes('"full collection after a burst of requests"')) return []
      const pause = (JSON.parse(line) as { annotations?: { pause_ms?: number } }).annotations?.pause_ms
      return typeof pause === "number" ? [pause] : []
    })
    if (pauses.length === 0) return []
    const total = pauses.reduce((sum, pause) => sum + pause, 0)
    return [
      `${TARGET_LABELS[target.id]}: ${pauses.length} full collections after bursts, pauses ${Math.round(Math.min(...pauses))}–${Math.round(Math.max(...pauses))} ms, ${Math.round(total)} ms in all, ` +
      `on the core the servers share, each 2 s after its last run (the next server's warm-up waits ${SETTLE_SECONDS} s for it).`
    ]
  })

/** Anything else busy on the machine shows here; it makes every number noisier. */
const describeLoad = (): string => loadavg().map((load) => load.toFixed(2)).join(" / ")

/** Bulwark runs as deployed: `bun start` serves the bundle `bun run build` writes to dist/. */
const buildBulwark = async (bulwarkDir: string): Promise<void> => {
  progress("building Bulwark (bun run build)")
  const built = await runToEnd([process.execPath, "run", "build"], { cwd: bulwarkDir, env: { ...process.env } as Record<string, string>, core: null })
  if (built.exitCode !== 0) fail(`bun run build failed in ${bulwarkDir}: ${built.stderr.trim() || built.stdout.trim()}`)
}

const run = async (settings: Settings, workDir: string, postgres: BenchPostgres | null): Promise<void> => {
  await buildBulwark(settings.bulwarkDir)
  const loadBefore = describeLoad()
  const header = await describeMachine(settings, postgres)
  const scenarios = defineScenarios(crypto.randomUUID(), settings.databases)
  const context: StartContext = {
    repoRoot: REPO_ROOT,
    bulwarkDir: settings.bulwarkDir,
    workDir,
    core: settings.cores?.server ?? null,
    sessionId: crypto.randomUUID(),
    postgres
  }
  const startups = await timeStarts(context, settings.databases, settings.starts)
  const targets = await startTargets(context, settings.databases)
  const redisDown = targets.get("bulwark-redis-down")
  const cacheBefore = redisDown === undefined ? null : await describeCacheHealth(redisDown)
  const probeNotes = await probeAll(scenarios, targets)
  const measurements = await measureAll(settings, scenarios, targets)
  const cacheAfter = redisDown === undefined ? null : await describeCacheHealth(redisDown)
  const report = buildReport({
    header,
    scenarios,
    measurements,
    startups,
    processes: await processStats([...targets.values()]),
    notes: [
      ...probeNotes,
      ...(cacheBefore === null ? [] : [`Bulwark with Redis unreachable, before the runs: ${cacheBefore}; after: ${cacheAfter}.`]),
      `Load average (1 / 5 / 15 min) before: ${loadBefore}; after: ${describeLoad()}. ` +
        "A server under load and wrk keep it near 2 on this machine; more means something else was running.",
      ...collectionNotes([...targets.values()]),
      ...STANDING_NOTES
    ]
  })
  await stopAll()
  progress("live fan-out (bench/fanout.ts)")
  const fanout = await runFanout({ repoRoot: REPO_ROOT, bulwarkDir: settings.bulwarkDir, core: settings.cores?.server ?? null, postgres })
  const markdown = `${renderMarkdown(report)}\n\n## Live fan-out\n\n${fanout}\n`
  writeResults(markdown, { settings, report, measurements, fanout })
  console.log(markdown)
  progress(`written to ${join(RESULTS_DIR, "latest.md")} and latest.json`)
}

const main = async (): Promise<void> => {
  if (!isWrkInstalled()) fail("wrk is not installed: apt-get install wrk")
  const settings = readSettings()
  const postgres = settings.databases.includes("postgres")
    ? await openBenchPostgres(settings.postgresUrl).catch((error: unknown) =>
      fail(`${error instanceof Error ? error.message : String(error)}\n(BENCH_DATABASES=sqlite runs the SQLite half alone)`)
    )
    : null
  const workDir = mkdtempSync(join(tmpdir(), "bulwark-bench-"))
  const cleanUp = async () => {
    await stopAll()
    rmSync(workDir, { recursive: true, force: true })
    await postgres?.dropAll().catch((error: unknown) =>
      progress(`could not drop this run's PostgreSQL databases (bench_*): ${error instanceof Error ? error.message : String(error)}`)
    )
  }
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.on(signal, () => {
      progress(`${signal}: stopping every server and wrk`)
      void cleanUp().finally(() => process.exit(code))
    })
  }
  try {
    await run(settings, workDir, postgres)
  } finally {
    await cleanUp()
  }
}

await main().catch((error: unknown) => {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
