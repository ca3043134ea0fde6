/**
 * One wrk run: `wrk -t1 -c<N> -d<N>s --latency` with bench/wrk.lua, which sets the method, key and
 * body and prints one `BENCH_RESULT {json}` line with latency percentiles and every status seen.
 */
import { join } from "node:path"
import { runToEnd } from "./processes.js"

const LUA_SCRIPT = join(import.meta.dir, "wrk.lua")

export interface WrkRequest {
  readonly url: string
  readonly method: "GET" | "POST"
  readonly apiKey: string
  readonly body?: string
  /** Headers besides the key and the content type (the MCP scenarios' protocol headers). */
  readonly headers?: Readonly<Record<string, string>>
}

export interface WrkSettings {
  readonly durationSeconds: number
  readonly connections: number
  /** The core wrk runs on, or null when pinning is not possible. */
  readonly core: number | null
}

export interface WrkResult {
  readonly durationSeconds: number
  readonly requests: number
  /** Responses by HTTP status, e.g. `{ "200": 51234 }`. */
  readonly statuses: Readonly<Record<string, number>>
  /** wrk's own "Non-2xx or 3xx responses" count. */
  readonly non2xx3xx: number
  readonly socketErrors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number }
  readonly latencyMs: { readonly mean: number; readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number; readonly max: number }
}

interface LuaReport {
  readonly duration_us: number
  readonly requests: number
  readonly errors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number; readonly non_2xx_3xx: number }
  readonly statuses: Record<string, number> | null
  readonly latency_us: { readonly mean: number; readonly max: number; readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number }
}

/** The request wrk sends, sent once with `fetch` (to check its answer, or to time it in process). */
export const sendOnce = (request: WrkRequest): Promise<Response> =>
  fetch(request.url, {
    method: request.method,
    headers: {
      authorization: `Bearer ${request.apiKey}`,
      ...(request.body === undefined ? {} : { "content-type": "application/json" }),
      ...request.headers
    },
    ...(request.body === undefined ? {} : { body: request.body })
  })

export const isWrkInstalled = (): boolean => Bun.which("wrk") !== null

export const runWrk = async (request: WrkRequest, settings: WrkSettings): Promise<WrkResult> => {
  const command = ["wrk", "-t1", `-c${settings.connections}`, `-d${settings.durationSeconds}s`, "--latency", "-s", LUA_SCRIPT, request.url]
  const { exitCode, stdout, stderr } = await runToEnd(command, {
    core: settings.core,
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      BENCH_METHOD: request.method,
      BENCH_API_KEY: request.apiKey,
      BENCH_BODY: request.body ?? "",
      BENCH_COUNT_STATUSES: "1",
      BENCH_HEADERS: Object.entries(request.headers ?? {}).map(([name, value]) => `${name}: ${value}`).join("\n")
    }
  })
  if (exitCode !== 0) throw new Error(`wrk exited with ${exitCode}: ${stderr.trim() || stdout.trim()}`)
  return fromLuaReport(parseReportLine(stdout))
}

const parseReportLine = (stdout: string): LuaReport => {
  const line = stdout.split("\n").find((candidate) => candidate.startsWith("BENCH_RESULT "))
  if (line === undefined) throw new Error(`wrk printed no BENCH_RESULT line:\n${stdout}`)
  return JSON.parse(line.slice("BENCH_RESULT ".length)) as LuaReport
}

const millis = (micros: number): number => micros / 1000

const fromLuaReport = (report: LuaReport): WrkResult => ({
  durationSeconds: report.duration_us / 1e6,
  requests: report.requests,
  statuses: report.statuses ?? {},
  non2xx3xx: report.errors.non_2xx_3xx,
  socketErrors: {
    connect: report.errors.connect,
    read: report.errors.read,
    write: report.errors.write,
    timeout: report.errors.timeout
  },
  latencyMs: {
    mean: millis(report.latency_us.mean),
    p50: millis(report.latency_us.p50),
    p90: millis(report.latency_us.p90),
    p99: millis(report.latency_us.p99),
    p999: millis(report.latency_us.p999),
    max: millis(report.latency_us.max)
  }
})
