/** Bad configuration stops the process at start: exit 1, one line on stderr naming the variable. */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const entry = join(import.meta.dir, "..", "src", "main.ts")

const start = (env: Record<string, string>, cwd: string) =>
  Bun.spawn(["bun", entry], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })

const failedStart = async (env: Record<string, string>) => {
  const cwd = mkdtempSync(join(tmpdir(), "bulwark-config-"))
  try {
    const child = start(env, cwd)
    const exitCode = await child.exited
    const stderr = (await new Response(child.stderr).text()).trim()
    return { exitCode, stderr }
  } finally {
    rmSync(cwd, { recursive: true, force: true })
  }
}

describe("configuration errors", () => {
  const cases: ReadonlyArray<[string, Record<string, string>, string]> = [
    ["an unparsable PORT", { PORT: "eighty" }, "PORT"],
    ["a PORT out of range", { PORT: "70000" }, "PORT"],
    ["an unknown DATABASE_URL scheme", { DATABASE_URL: "mysql://localhost/db" }, "DATABASE_URL"],
    ["an unreachable DATABASE_URL", { DATABASE_URL: "file:/proc/bulwark/cannot/exist.db" }, "DATABASE_URL"],
    ["an unknown LOG_LEVEL", { LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    ["an unknown LOG_FORMAT", { LOG_FORMAT: "xml" }, "LOG_FORMAT"],
    ["a short BULWARK_ADMIN_TOKEN", { BULWARK_ADMIN_TOKEN: "short" }, "BULWARK_ADMIN_TOKEN"],
    ["a short BULWARK_JWT_SECRET", { BULWARK_JWT_SECRET: "short" }, "BULWARK_JWT_SECRET"],
    ["a zero BULWARK_REQUEST_TIMEOUT_MS", { BULWARK_REQUEST_TIMEOUT_MS: "0" }, "BULWARK_REQUEST_TIMEOUT_MS"],
    ["an unparsable BULWARK_ERROR_RETENTION_DAYS", { BULWARK_ERROR_RETENTION_DAYS: "a month" }, "BULWARK_ERROR_RETENTION_DAYS"],
    ["a malformed OTEL_EXPORTER_OTLP_ENDPOINT", { OTEL_EXPORTER_OTLP_ENDPOINT: "not a url" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
    ["an unknown OTEL_EXPORTER_OTLP_PROTOCOL", { OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_PROTOCOL"],
    ["an OTEL_TRACES_SAMPLER_ARG over 1", { OTEL_TRACES_SAMPLER_ARG: "2" }, "OTEL_TRACES_SAMPLER_ARG"],
    ["an unparsable OTEL_TRACES_SAMPLER_ARG", { OTEL_TRACES_SAMPLER_ARG: "half" }, "OTEL_TRACES_SAMPLER_ARG"],
    ["a BULWARK_TRACE_URL without {trace_id}", { BULWARK_TRACE_URL: "https://jaeger.example/trace/" }, "BULWARK_TRACE_URL"],
    ["a zero BULWARK_MAX_STREAMS_PER_KEY", { BULWARK_MAX_STREAMS_PER_KEY: "0" }, "BULWARK_MAX_STREAMS_PER_KEY"],
    ["an unparsable BULWARK_MAX_STREAMS", { BULWARK_MAX_STREAMS: "many" }, "BULWARK_MAX_STREAMS"]
  ]
  for (const [name, env, variable] of cases) {
    // A process start costs 1-4 s on this busy machine; the bound is the start's, not the behaviour's.
    test(`${name} exits 1 with one line naming ${variable}`, { timeout: 20_000 }, async () => {
      const { exitCode, stderr } = await failedStart(env)
      expect(exitCode).toBe(1)
      expect(stderr.split("\n")).toHaveLength(1)
      expect(stderr).toContain(variable)
    })
  }
})

describe("start-up", () => {
  test("a fresh directory gets the SQLite file, a 0600 admin token, and serves", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "bulwark-start-"))
    const child = start({}, cwd)
    try {
      const reader = child.stdout.getReader()
      let output = ""
      let port: string | undefined
      while (port === undefined) {
        const { done, value } = await reader.read()
        if (done) throw new Error(`server exited before listening: ${output}`)
        output += new TextDecoder().decode(value)
        port = /Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]
      }
      const ready = await fetch(`http://127.0.0.1:${port}/health/ready`)
      expect(ready.status).toBe(200)
      expect(statSync(join(cwd, "data", "bulwark.db")).isFile()).toBe(true)
      expect(statSync(join(cwd, "data", "admin-token")).mode & 0o777).toBe(0o600)
      expect(statSync(join(cwd, "data", "jwt-secret")).mode & 0o777).toBe(0o600)
      // The token's path is logged; the token itself never is.
      const token = await Bun.file(join(cwd, "data", "admin-token")).text()
      expect(output).toContain("admin-token")
      expect(output).not.toContain(token.trim())
      child.kill("SIGTERM")
      expect(await child.exited).toBe(0)
    } finally {
      child.kill("SIGKILL")
      rmSync(cwd, { recursive: true, force: true })
    }
  }, 30_000)
})
