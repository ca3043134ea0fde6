/**
 * `bun bench/mcpCost.ts`: what an MCP call costs the server against its REST twin, as the server's
 * own CPU time per request (user + system, read from /proc before and after a burst), which a busy
 * machine disturbs far less than requests per second. Bulwark runs as `bun start` runs it; the
 * client is this process, with 16 requests in flight.
 *
 * Settings (environment): MCP_COST_REQUESTS per scenario and round (4000), MCP_COST_ROUNDS (3).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runToEnd, stopAll } from "./processes.js"
import { type ScenarioId, scenarios } from "./scenarios.js"
import { startBulwark } from "./targets.js"
import { sendOnce, type WrkRequest } from "./wrk.js"

const REQUESTS = Number(process.env["MCP_COST_REQUESTS"] ?? 4000)
const ROUNDS = Number(process.env["MCP_COST_ROUNDS"] ?? 3)
const IN_FLIGHT = 16
/** /proc reports CPU time in clock ticks (`getconf CLK_TCK`, 100 on Linux). */
const TICK_MICROS = 10_000

const TWINS: ReadonlyArray<readonly [ScenarioId, ScenarioId]> = [
  ["mcp-read", "hot-read"],
  ["mcp-read-stateless", "hot-read"],
  ["mcp-write", "write"]
]

const cpuMicros = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) * TICK_MICROS
}

const send = async (request: WrkRequest): Promise<number> => {
  const response = await sendOnce(request)
  const text = await response.text()
  if (text.includes('"isError":true') || text.includes('"error":{')) throw new Error(`a wrong answer: ${text.slice(0, 300)}`)
  return response.status
}

const burst = async (request: WrkRequest, count: number) => {
  let next = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next++ < count) await send(request)
  }))
}

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const main = async () => {
  const workDir = mkdtempSync(join(tmpdir(), "bulwark-mcp-cost-"))
  try {
    const built = await runToEnd([process.execPath, "run", "build"], { cwd: join(import.meta.dir, ".."), env: { ...process.env } as Record<string, string>, core: null })
    if (built.exitCode !== 0) throw new Error(`bun run build failed: ${built.stderr}`)
    const sessionId = crypto.randomUUID()
    const target = await startBulwark(
      { repoRoot: join(import.meta.dir, ".."), bulwarkDir: join(import.meta.dir, ".."), workDir, core: null, sessionId, postgres: null },
      { id: "bulwark" }
    )
    const byId = new Map(scenarios(crypto.randomUUID(), ["sqlite"]).map((scenario) => [scenario.id, scenario]))
    const ids = [...new Set(TWINS.flat())]
    const costs = new Map<ScenarioId, Array<number>>(ids.map((id) => [id, []]))
    for (const id of ids) await burst(byId.get(id)!.request(target), 300)
    for (let round = 1; round <= ROUNDS; round++) {
      for (const id of ids) {
        const request = byId.get(id)!.request(target)
        const before = cpuMicros(target.process.pid)
        await burst(request, REQUESTS)
        costs.get(id)!.push((cpuMicros(target.process.pid) - before) / REQUESTS)
      }
    }
    console.log(`server CPU per request (median of ${ROUNDS} rounds of ${REQUESTS}, ${IN_FLIGHT} in flight)`)
    for (const id of ids) console.log(`  ${id.padEnd(20)} ${median(costs.get(id)!).toFixed(0).padStart(5)} µs   rounds: ${costs.get(id)!.map((c) => c.toFixed(0)).join(", ")}`)
    for (const [mcp, rest] of TWINS) {
      const ratio = median(costs.get(mcp)!) / median(costs.get(rest)!)
      console.log(`  ${mcp} ÷ ${rest}: ${ratio.toFixed(2)}× (goal ≤ 1.50×: ${ratio <= 1.5 ? "met" : "not met"})`)
    }
  } finally {
    await stopAll()
    rmSync(workDir, { recursive: true, force: true })
  }
}

await main()
