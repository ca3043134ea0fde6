/**
 * What a fault test observed, for `docs/fault-matrix.md` (`bun run faults`): with
 * `BULWARK_FAULT_MATRIX` naming a file, each recorded fault appends one JSON line to it; without it
 * every call here does nothing, so the tests run as they always do.
 *
 * In a test, one line per step:
 *
 *   const fault = faultMatrix(server, "redis-killed", { broken: "Redis", how: "SIGKILL", dependency: "cache" })
 *   await fault.saw(problem)      // a client's answer while it is broken (a Problem, or a Response for a 2xx)
 *   fault.healed()                // the fault is undone: the recovery clock starts
 *   await fault.recovered()       // the first good answer: reads the ledger row, span and metrics, writes the line
 *
 * The ledger row is the one of the first answer with an `error_id` (or the newest row with
 * `ledgerCode`); its `trace_id` finds the request's server span at an OTLP receiver every test server
 * exports to while recording (see `startServer`).
 */
import { appendFileSync } from "node:fs"
import { relative } from "node:path"
import { type Receiver, startReceiver } from "./otlp.js"
import type { LedgerRecord, Problem, TestServer } from "./server.js"

const target = process.env["BULWARK_FAULT_MATRIX"] ?? ""

export const faultMatrixOn = target !== ""

let receiver: Receiver | undefined

/** Where test servers export spans while the matrix is recorded (undefined otherwise). */
export const faultMatrixOtlpEndpoint = (): string | undefined => {
  if (!faultMatrixOn) return undefined
  receiver ??= startReceiver()
  return receiver.url
}

export interface FaultDescription {
  /** What was broken, e.g. "Redis (cache)". */
  readonly broken: string
  /** How, e.g. "SIGKILL of the test's own redis-server". */
  readonly how: string
  /** The dependency whose metrics describe it. */
  readonly dependency?: "database" | "cache" | "memory"
  /** When clients got no error_id (a degraded 200), the ledger code to look for. */
  readonly ledgerCode?: string
}

/** One line of the matrix file. */
export interface FaultObservation extends FaultDescription {
  readonly id: string
  readonly database: "SQLite" | "PostgreSQL"
  readonly test: string
  readonly answers: Record<string, number>
  readonly retryAfter: Array<string>
  readonly ledger: { readonly type: string; readonly code: string; readonly severity: string; readonly route: string | null } | null
  readonly spanStatus: "unset" | "OK" | "ERROR" | null
  readonly metrics: Array<string>
  readonly recoveredMillis: number | null
}

export interface Fault {
  readonly saw: (answer: Problem | Response) => Promise<void>
  readonly healed: () => void
  readonly recovered: () => Promise<void>
}

const noop: Fault = { saw: async () => undefined, healed: () => undefined, recovered: async () => undefined }

const SPAN_STATUS = ["unset", "OK", "ERROR"] as const

const callerFile = (): string => {
  const line = new Error().stack?.split("\n").find((frame) => frame.includes(".test.ts"))
  const path = /\((\/[^:)]+\.test\.ts)|at (\/[^:)]+\.test\.ts)/.exec(line ?? "")
  const file = path?.[1] ?? path?.[2]
  return file === undefined ? "?" : relative(process.cwd(), file)
}

const poll = async <A>(probe: () => Promise<A | undefined>, millis: number): Promise<A | undefined> => {
  const deadline = performance.now() + millis
  for (;;) {
    // While the server heals a read may fail; the deadline bounds how long that is tried.
    const value = await probe().catch(() => undefined)
    if (value !== undefined || performance.now() > deadline) return value
    await Bun.sleep(50)
  }
}

export const faultMatrix = (server: TestServer, id: string, description: FaultDescription): Fault => {
  if (!faultMatrixOn) return noop
  const test = callerFile()
  const answers: Record<string, number> = {}
  const retryAfter = new Set<string>()
  let errorId: string | undefined
  let answerTraceId: string | undefined
  let metrics: Array<string> = []
  let healedAt: number | undefined

  const metricsText = async () => (await server.admin("/metrics")).text()
  // Counters are the test process's (every server in it adds to them): the fault's share is the difference from here.
  // Unreadable (the server not up yet): no baseline, and the totals are shown whole.
  const before = metricsText().catch(() => "")
  const errorCounts = (text: string) =>
    new Map(text.split("\n").flatMap((line) => {
      const match = /^bulwark_errors_total\{.*code="([^"]+)".*\} (\S+)$/.exec(line)
      return match === null ? [] : [[match[1]!, Number(match[2])] as const]
    }))

  const metricLines = async () => {
    const text = await metricsText()
    const dependency = description.dependency
    const gauges = text.split("\n").filter((line) =>
      dependency !== undefined && /^bulwark_(dependency_up|breaker_state)\{/.test(line) && line.includes(`dependency="${dependency}"`))
    const earlier = errorCounts(await before)
    const counted = [...errorCounts(text)].flatMap(([code, count]) => {
      const added = count - (earlier.get(code) ?? 0)
      return added > 0 ? [`bulwark_errors_total{code="${code}"} +${added}`] : []
    })
    return [...gauges, ...counted]
  }

  return {
    saw: async (answer) => {
      const isProblem = !(answer instanceof Response)
      const key = isProblem ? `${answer.status} ${answer.code}` : String(answer.status)
      answers[key] = (answers[key] ?? 0) + 1
      if (isProblem) {
        errorId ??= answer.error_id
        if (answer.retry_after_seconds !== undefined) retryAfter.add(`${answer.retry_after_seconds} s`)
      } else {
        const header = answer.headers.get("retry-after")
        if (header !== null) retryAfter.add(`${header} s`)
        answerTraceId ??= answer.headers.get("x-trace-id") ?? undefined
      }
      // While it is broken: the first answer's moment tells the state clients met.
      if (metrics.length === 0) metrics = await metricLines().catch((error: unknown) => [`(metrics unreadable: ${String(error)})`])
    },
    healed: () => {
      healedAt = performance.now()
    },
    recovered: async () => {
      const recoveredMillis = healedAt === undefined ? null : Math.round(performance.now() - healedAt)
      const row = await poll<LedgerRecord>(async () => {
        if (errorId !== undefined) {
          const response = await server.admin(`/v1/admin/errors/${errorId}`)
          return response.status === 200 ? ((await response.json()) as LedgerRecord) : undefined
        }
        if (description.ledgerCode === undefined) return undefined
        const response = await server.admin(`/v1/admin/errors?code=${description.ledgerCode}&limit=50`)
        if (response.status !== 200) return undefined
        // A client's request rather than a background probe's: its span is the server span clients met.
        const rows = ((await response.json()) as { data: Array<LedgerRecord> }).data
        return rows.find((candidate) => candidate.method !== null) ?? rows[0]
      }, errorId === undefined && description.ledgerCode === undefined ? 0 : 5000)
      // The failed request's span; for a degraded success, the answer's own.
      const traceId = row?.trace_id ?? answerTraceId
      const span = traceId === undefined || receiver === undefined
        ? undefined
        : await poll(async () => receiver!.spans().find((candidate) => candidate.traceId === traceId && candidate.kind === 2), 3000)
      const observation: FaultObservation = {
        id,
        ...description,
        database: server.databaseUrl.startsWith("postgres") ? "PostgreSQL" : "SQLite",
        test,
        answers,
        retryAfter: [...retryAfter],
        ledger: row === undefined ? null : { type: row.type, code: row.code, severity: row.severity, route: row.route },
        spanStatus: span === undefined ? null : SPAN_STATUS[span.status.code] ?? null,
        metrics,
        recoveredMillis
      }
      appendFileSync(target, `${JSON.stringify(observation)}\n`)
    }
  }
}
