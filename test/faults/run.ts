/**
 * `bun run faults`: runs the real-fault tests on SQLite and on PostgreSQL with `BULWARK_FAULT_MATRIX`
 * set, so that each records what it observed (`test/support/faultMatrix.ts`), and writes
 * `docs/fault-matrix.md` from those observations. Exits 1 when a test failed (the matrix is still
 * written, from what was observed) or nothing was recorded.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import type { FaultObservation } from "../support/faultMatrix.js"

const root = join(import.meta.dir, "..", "..")
const output = join(root, "docs", "fault-matrix.md")

const files = [
  ...readdirSync(join(root, "test/faults")).filter((name) => name.endsWith(".test.ts")).map((name) => `test/faults/${name}`),
  ...readdirSync(join(root, "test/postgres")).filter((name) => name.startsWith("faults-") && name.endsWith(".test.ts")).map((name) => `test/postgres/${name}`),
  // SQLite's write lock held by another connection is asserted with the other 503s, the memory store's failure with memory.
  "test/http/errors.test.ts",
  "test/http/memory.test.ts"
].sort()

const workDir = mkdtempSync(join(tmpdir(), "bulwark-faults-"))
const observations = join(workDir, "observations.jsonl")
console.error(`faults: bun test ${files.length} files, recording to ${observations}`)
const child = Bun.spawn([process.execPath, "test", ...files], {
  cwd: root,
  env: { ...process.env, BULWARK_FAULT_MATRIX: observations },
  stdin: "ignore",
  stdout: "inherit",
  stderr: "inherit"
})
const exitCode = await child.exited

const seen: Array<FaultObservation> = existsSync(observations)
  ? readFileSync(observations, "utf8").trim().split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as FaultObservation)
  : []
rmSync(workDir, { recursive: true, force: true })

const BREAKER = ["closed", "half-open", "open", "forced open", "disabled"]

const metric = (line: string): string => {
  const match = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line)
  if (match === null) return line
  const [, name, labels, value] = match
  if (name === "bulwark_breaker_state") return `breaker ${BREAKER[Number(value)] ?? value}`
  if (name === "bulwark_dependency_up") return `\`dependency_up\` ${value}`
  if (name === "bulwark_errors_total") return `\`errors_total{${/code="([^"]+)"/.exec(labels ?? "")?.[1]}}\` ${value}`
  return `\`${name}{${labels}}\` ${value}`
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ")

const answers = (observation: FaultObservation) =>
  Object.entries(observation.answers).map(([answer, count]) => (count === 1 ? answer : `${answer} (×${count})`)).join(", ")

const recovery = (observation: FaultObservation) =>
  observation.recoveredMillis === null ? "—" : `${observation.recoveredMillis} ms`

// One block per fault, in the order first seen, SQLite before PostgreSQL.
const byFault = new Map<string, Map<string, FaultObservation>>()
for (const observation of seen) {
  const row = byFault.get(observation.id) ?? new Map<string, FaultObservation>()
  row.set(observation.database, observation)
  byFault.set(observation.id, row)
}

const lines = [
  "# Fault matrix",
  "",
  "Written by `bun run faults` from what the real-fault tests observed (`test/support/faultMatrix.ts`), not by hand:",
  "each test breaks a real dependency under a running Bulwark and records the answers clients got while it was broken;",
  "the ledger row of the first failed answer (for a degraded 200, the newest row of the code it names); the status of",
  "the failed request's server span as exported over OTLP (for a degraded 200, the answer's own span, by `X-Trace-Id`);",
  "the dependency's gauges at the first answer and the `bulwark_errors_total` the fault added; and the time from undoing",
  "the fault to the first good answer the test saw (it includes the test's own polling, every 10 ms, and whatever checks",
  "the test makes first). A fault without a PostgreSQL row is SQLite's own (its file lock, its file's schema) or runs on",
  "SQLite only for the reason its test names; one without a SQLite row is PostgreSQL's own. \"—\": nothing of that kind to",
  "read (no error, no row, a fault that is over with its own request, or a test that does not wait for the recovery).",
  "",
  `Run: ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${seen.length} observations from ${new Set(seen.map((o) => o.test)).size} test files; \`bun test\` exit code ${exitCode}.`,
  "",
  "| fault | how it is made | database | clients got | Retry-After | ledger row (type / code / severity) | span status | metrics while broken | time to recover | test |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
]
for (const [id, databases] of byFault) {
  for (const database of ["SQLite", "PostgreSQL"]) {
    const observation = databases.get(database)
    if (observation === undefined) continue
    lines.push(`| ${[
      `${observation.broken} (\`${id}\`)`,
      observation.how,
      database,
      answers(observation),
      observation.retryAfter.length === 0 ? "—" : observation.retryAfter.join(", "),
      observation.ledger === null
        ? "—"
        : `${observation.ledger.type} / \`${observation.ledger.code}\` / ${observation.ledger.severity}${observation.ledger.route === null ? " (no request on the row)" : ""}`,
      observation.spanStatus ?? "—",
      observation.metrics.length === 0 ? "—" : observation.metrics.map(metric).join("; "),
      recovery(observation),
      `\`${relative(root, join(root, observation.test))}\``
    ].map(cell).join(" | ")} |`)
  }
}
lines.push("")
writeFileSync(output, lines.join("\n"))
console.error(`faults: ${seen.length} observations of ${byFault.size} faults written to ${relative(root, output)}`)
if (exitCode !== 0) console.error(`faults: bun test exited ${exitCode}: the matrix holds only what the passing steps observed`)
process.exit(exitCode !== 0 || seen.length === 0 ? 1 : 0)
