/**
 * From wrk runs to the table: medians over rounds, ratios to the references, the goals of the issue,
 * and the markdown written to bench/results/latest.md.
 */
import type { Scenario, ScenarioId } from "./scenarios.js"
import { BULWARK_COMPARED_WITH, isReference, TARGET_LABELS, type TargetId } from "./targets.js"
import type { WrkResult } from "./wrk.js"

export interface Measurement {
  readonly round: number
  readonly scenarioId: ScenarioId
  readonly targetId: TargetId
  readonly expectedStatus: number
  readonly result: WrkResult
}

export interface Row {
  readonly scenarioId: ScenarioId
  readonly targetId: TargetId
  readonly expectedStatus: number
  /** Responses with the expected status per second: wrong answers are never throughput. */
  readonly okPerSecond: number
  readonly okPerSecondRange: readonly [number, number]
  readonly p50Ms: number
  readonly p99Ms: number
  /** wrk's "Non-2xx or 3xx responses", summed over rounds. */
  readonly non2xx3xx: number
  /** Responses with another status than the expected one, and socket errors, summed over rounds. */
  readonly unexpected: Readonly<Record<string, number>>
}

/**
 * Seconds every server is left without requests after the runs before its memory is read again: a
 * server that collects its garbage once a burst ends (Bulwark does after 2 s) shows what it keeps.
 */
export const SETTLE_SECONDS = 3

export interface ProcessStats {
  readonly targetId: TargetId
  readonly startupMillis: number
  readonly idleRssMb: number
  /** Right after the last run. */
  readonly finalRssMb: number
  /** After `SETTLE_SECONDS` more without requests: what the process keeps once it has collected the runs' garbage. */
  readonly settledRssMb: number
  readonly logLines: number
  /** Ledger rows written to stderr instead of the table (`"ledger":"dropped"` lines): a storm the ledger did not keep up with. */
  readonly droppedLedgerRows: number
}

/** Bulwark's starts timed alone on one database (spawn to the first 200 on `/health/ready`, a new database each). */
export interface StartupTimes {
  readonly targetId: TargetId
  readonly millis: ReadonlyArray<number>
}

export interface Goal {
  readonly name: string
  readonly measured: string
  readonly target: string
  /** null when the runs needed to judge it are missing. */
  readonly met: boolean | null
}

export interface Report {
  readonly header: ReadonlyArray<string>
  readonly scenarios: ReadonlyArray<Scenario>
  readonly rows: ReadonlyArray<Row>
  readonly processes: ReadonlyArray<ProcessStats>
  readonly startups: ReadonlyArray<StartupTimes>
  readonly goals: ReadonlyArray<Goal>
  readonly notes: ReadonlyArray<string>
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const okPerSecondOf = (measurement: Measurement): number =>
  (measurement.result.statuses[String(measurement.expectedStatus)] ?? 0) / measurement.result.durationSeconds

const unexpectedOf = (measurement: Measurement): Record<string, number> => {
  const unexpected: Record<string, number> = {}
  for (const [status, count] of Object.entries(measurement.result.statuses)) {
    if (status !== String(measurement.expectedStatus)) unexpected[status] = count
  }
  const socketErrors = Object.values(measurement.result.socketErrors).reduce((sum, count) => sum + count, 0)
  if (socketErrors > 0) unexpected["socket errors"] = socketErrors
  return unexpected
}

const addCounts = (into: Record<string, number>, counts: Readonly<Record<string, number>>): Record<string, number> => {
  for (const [key, count] of Object.entries(counts)) into[key] = (into[key] ?? 0) + count
  return into
}

const summarize = (scenarios: ReadonlyArray<Scenario>, measurements: ReadonlyArray<Measurement>): Array<Row> =>
  scenarios.flatMap((scenario) =>
    scenario.targets.flatMap((targetId): Array<Row> => {
      const runs = measurements.filter((m) => m.scenarioId === scenario.id && m.targetId === targetId)
      if (runs.length === 0) return []
      const okPerSecond = runs.map(okPerSecondOf)
      return [{
        scenarioId: scenario.id,
        targetId,
        expectedStatus: scenario.expectedStatus,
        okPerSecond: median(okPerSecond),
        okPerSecondRange: [Math.min(...okPerSecond), Math.max(...okPerSecond)],
        p50Ms: median(runs.map((m) => m.result.latencyMs.p50)),
        p99Ms: median(runs.map((m) => m.result.latencyMs.p99)),
        non2xx3xx: runs.reduce((sum, m) => sum + m.result.non2xx3xx, 0),
        unexpected: runs.reduce((sum, m) => addCounts(sum, unexpectedOf(m)), {} as Record<string, number>)
      }]
    })
  )

const rowOf = (rows: ReadonlyArray<Row>, scenarioId: ScenarioId, targetId: TargetId): Row | undefined =>
  rows.find((row) => row.scenarioId === scenarioId && row.targetId === targetId)

const ratio = (numerator: number, denominator: number): number | null => denominator > 0 ? numerator / denominator : null

const formatRatio = (value: number | null): string => value === null ? "n/a" : `${value.toFixed(2)}×`

const formatCount = (value: number): string => Math.round(value).toLocaleString("en-US")

const formatMs = (value: number): string => value.toFixed(value < 10 ? 2 : 1)

const formatMb = (value: number): string => `${value.toFixed(1)} MB`

/** Issue 17's targets, on each database against the peer on the same database. */
const evaluateGoals = (rows: ReadonlyArray<Row>, processes: ReadonlyArray<ProcessStats>, startups: ReadonlyArray<StartupTimes>): Array<Goal> => {
  const redisDown = rowOf(rows, "hot-read-redis-down", "bulwark-redis-down")
  const hot = rowOf(rows, "hot-read", "bulwark")
  const p99Delta = hot && redisDown ? redisDown.p99Ms - hot.p99Ms : null
  // An MCP call's cost against its REST twin's: REST req/s ÷ MCP req/s (cost is time per request).
  const mcpCost = (target: TargetId, mcpId: ScenarioId, restId: ScenarioId, name: string): Goal => {
    const mcp = rowOf(rows, mcpId, target)
    const rest = rowOf(rows, restId, target)
    const cost = mcp && rest ? ratio(rest.okPerSecond, mcp.okPerSecond) : null
    return { name, measured: formatRatio(cost), target: "≤ 1.50×", met: cost === null ? null : cost <= 1.5 }
  }
  const atLeast = (name: string, value: number | null, minimum: number): Goal => ({
    name,
    measured: formatRatio(value),
    target: `≥ ${minimum.toFixed(2)}×`,
    met: value === null ? null : value >= minimum
  })
  const ratios = (database: string, ids: {
    readonly bulwark: TargetId
    readonly hono: TargetId
    readonly hot: ScenarioId
    readonly notFound: ScenarioId
    readonly write: ScenarioId
  }): Array<Goal> => {
    const rowFor = (scenario: ScenarioId, target: TargetId) => rowOf(rows, scenario, target)
    const over = (a: Row | undefined, b: Row | undefined) => (a && b ? ratio(a.okPerSecond, b.okPerSecond) : null)
    return [
      atLeast(`${database}: hot read req/s, Bulwark ÷ Hono`, over(rowFor(ids.hot, ids.bulwark), rowFor(ids.hot, ids.hono)), 0.7),
      atLeast(`${database}: message write req/s, Bulwark ÷ Hono`, over(rowFor(ids.write, ids.bulwark), rowFor(ids.write, ids.hono)), 1.0),
      atLeast(`${database}: 404 req/s ÷ hot read req/s (Bulwark)`, over(rowFor(ids.notFound, ids.bulwark), rowFor(ids.hot, ids.bulwark)), 0.9)
    ]
  }
  const finalRss = processes.filter((stats) => stats.targetId === "bulwark" || stats.targetId === "bulwark-pg")
  const worstSettledRss = finalRss.length === 0 ? null : Math.max(...finalRss.map((stats) => stats.settledRssMb))
  return [
    mcpCost("bulwark", "mcp-read", "hot-read", "MCP get_session cost ÷ REST GET (2025-11-25 session)"),
    mcpCost("bulwark", "mcp-read-stateless", "hot-read", "MCP get_session cost ÷ REST GET (2026-07-28)"),
    mcpCost("bulwark", "mcp-write", "write", "MCP post_message cost ÷ REST POST (2025-11-25 session)"),
    mcpCost("bulwark-pg", "pg-mcp-read", "pg-hot-read", "PostgreSQL: MCP get_session cost ÷ REST GET"),
    mcpCost("bulwark-pg", "pg-mcp-write", "pg-write", "PostgreSQL: MCP post_message cost ÷ REST POST"),
    ...ratios("SQLite", { bulwark: "bulwark", hono: "hono", hot: "hot-read", notFound: "not-found", write: "write" }),
    ...ratios("PostgreSQL", { bulwark: "bulwark-pg", hono: "hono-pg", hot: "pg-hot-read", notFound: "pg-not-found", write: "pg-write" }),
    {
      name: "hot read p99, Redis unreachable − normal",
      measured: p99Delta === null ? "n/a" : `${p99Delta >= 0 ? "+" : ""}${p99Delta.toFixed(2)} ms`,
      target: "≤ +2 ms",
      met: p99Delta === null ? null : p99Delta <= 2
    },
    ...startups.map((startup): Goal => {
      const middle = median(startup.millis)
      return {
        name: `start to ready, ${TARGET_LABELS[startup.targetId]} (median of ${startup.millis.length} starts, a new database each)`,
        measured: `${Math.round(middle)} ms (${Math.round(Math.min(...startup.millis))}–${Math.round(Math.max(...startup.millis))})`,
        target: "< 500 ms",
        met: middle < 500
      }
    }),
    {
      name: `RSS after all runs, ${SETTLE_SECONDS} s idle (Bulwark, each database)`,
      measured: worstSettledRss === null ? "n/a" : formatMb(worstSettledRss),
      target: "< 150 MB",
      met: worstSettledRss === null ? null : worstSettledRss < 150
    }
  ]
}

export const buildReport = (input: {
  readonly header: ReadonlyArray<string>
  readonly scenarios: ReadonlyArray<Scenario>
  readonly measurements: ReadonlyArray<Measurement>
  readonly processes: ReadonlyArray<ProcessStats>
  readonly startups: ReadonlyArray<StartupTimes>
  readonly notes: ReadonlyArray<string>
}): Report => {
  const rows = summarize(input.scenarios, input.measurements)
  return {
    header: input.header,
    scenarios: input.scenarios,
    rows,
    processes: input.processes,
    startups: input.startups,
    goals: evaluateGoals(rows, input.processes, input.startups),
    notes: input.notes
  }
}

const table = (head: ReadonlyArray<string>, align: string, body: ReadonlyArray<ReadonlyArray<string>>): string =>
  [`| ${head.join(" | ")} |`, align, ...body.map((cells) => `| ${cells.join(" | ")} |`)].join("\n")

const describeUnexpected = (unexpected: Readonly<Record<string, number>>): string => {
  const entries = Object.entries(unexpected)
  return entries.length === 0 ? "0" : entries.map(([status, count]) => `${formatCount(count)} × ${status}`).join(", ")
}

/** Bulwark's ok req/s (on the same database) divided by this server's, for the reference rows of a scenario. */
const bulwarkVersus = (rows: ReadonlyArray<Row>, row: Row): string => {
  if (!isReference(row.targetId)) return "—"
  const bulwark = rowOf(rows, row.scenarioId, BULWARK_COMPARED_WITH[row.targetId])
  return bulwark === undefined ? "n/a" : formatRatio(ratio(bulwark.okPerSecond, row.okPerSecond))
}

const resultsTable = (report: Report): string =>
  table(
    ["scenario", "server", "ok req/s", "range over rounds", "p50 ms", "p99 ms", "non-2xx/3xx", "unexpected", "Bulwark ÷ this"],
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    report.rows.map((row) => {
      const scenario = report.scenarios.find((candidate) => candidate.id === row.scenarioId)
      return [
        `${scenario?.title ?? row.scenarioId} (expects ${row.expectedStatus})`,
        TARGET_LABELS[row.targetId],
        formatCount(row.okPerSecond),
        `${formatCount(row.okPerSecondRange[0])}–${formatCount(row.okPerSecondRange[1])}`,
        formatMs(row.p50Ms),
        formatMs(row.p99Ms),
        formatCount(row.non2xx3xx),
        describeUnexpected(row.unexpected),
        bulwarkVersus(report.rows, row)
      ]
    })
  )

const goalsTable = (goals: ReadonlyArray<Goal>): string =>
  table(
    ["goal", "measured", "target", "met"],
    "| --- | ---: | ---: | --- |",
    goals.map((goal) => [goal.name, goal.measured, goal.target, goal.met === null ? "not measured" : goal.met ? "yes" : "**no**"])
  )

const processesTable = (processes: ReadonlyArray<ProcessStats>): string =>
  table(
    ["server", "start to ready", "idle RSS", "RSS after the runs", `RSS ${SETTLE_SECONDS} s later`, "log lines", "ledger rows dropped"],
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    processes.map((stats) => [
      TARGET_LABELS[stats.targetId],
      `${Math.round(stats.startupMillis)} ms`,
      formatMb(stats.idleRssMb),
      formatMb(stats.finalRssMb),
      formatMb(stats.settledRssMb),
      formatCount(stats.logLines),
      formatCount(stats.droppedLedgerRows)
    ])
  )

export const renderMarkdown = (report: Report): string =>
  [
    "# Bulwark benchmark",
    "",
    ...report.header.map((line) => `${line}  `),
    "",
    "## Throughput and latency (medians over rounds)",
    "",
    resultsTable(report),
    "",
    "## Goals",
    "",
    goalsTable(report.goals),
    "",
    "## Processes",
    "",
    processesTable(report.processes),
    "",
    "## Notes",
    "",
    ...report.notes.map((note) => `- ${note}`),
    ""
  ].join("\n")
