/** Every failure is recorded under the error_id the client got (SPEC §6), through HTTP. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Effect, Metric } from "effect"
import { ledgerDroppedTotal } from "../../src/telemetry/Metrics.js"
import {
  defectRoute,
  eventually,
  expectProblem,
  ledgerRecord,
  startServer,
  type TestServer,
  withKey
} from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"

let server: TestServer
let tenant: { id: string; api_key: string }

beforeAll(async () => {
  server = await startServer({ extraRoutes: defectRoute })
  tenant = await server.createTenant()
})
afterAll(() => server.close())

describe("ledger rows", () => {
  test("a 404 is ledgered with code, status, severity, route, tenant, session, request and trace ids", async () => {
    const sessionId = crypto.randomUUID()
    const response = await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key, { headers: { "x-request-id": "req-404" } }))
    const problem = await expectProblem(response, 404, "SESSION_NOT_FOUND")
    const row = await ledgerRecord(server, problem.error_id)
    expect(row).toMatchObject({
      error_id: problem.error_id,
      type: "http",
      code: "SESSION_NOT_FOUND",
      status: 404,
      severity: "warning",
      method: "GET",
      route: "/v1/sessions/:id",
      tenant_id: tenant.id,
      session_id: sessionId,
      request_id: "req-404",
      resolved: false
    })
    expect(row.trace_id).toMatch(/^[0-9a-f]{32}$/)
    expect(row.fingerprint).toMatch(/^[0-9a-f]{16}$/)
  })

  test("error ids are UUID v7 and later errors sort after earlier ones (SPEC §2)", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) {
      const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key))
      ids.push((await expectProblem(response, 404, "SESSION_NOT_FOUND")).error_id)
    }
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
  })

  test("a 400 with a password in the body is ledgered with the payload sanitised", async () => {
    const body = {
      title: 42,
      metadata: { password: "hunter2-secret", nested: { API_KEY: tenant.api_key, "access-token": "tok-123" }, kept: "visible" }
    }
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify(body) }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    const row = await ledgerRecord(server, problem.error_id)
    expect(row).toMatchObject({ type: "validation", status: 400, severity: "warning", route: "/v1/sessions" })
    expect(row.request_payload).toEqual({
      title: 42,
      metadata: { password: "[Filtered]", nested: { API_KEY: "[Filtered]", "access-token": "[Filtered]" }, kept: "visible" }
    })
    const text = JSON.stringify(row)
    for (const secret of ["hunter2-secret", tenant.api_key, "tok-123"]) expect(text).not.toContain(secret)
  })

  test("a 401 is ledgered as auth, without the credential", async () => {
    const badKey = "bk_thisKeyDoesNotExistButLooksLikeOne000000000"
    const response = await server.fetch("/v1/sessions", { headers: { authorization: `Bearer ${badKey}` } })
    const problem = await expectProblem(response, 401, "AUTH_INVALID")
    const row = await ledgerRecord(server, problem.error_id)
    expect(row).toMatchObject({ type: "auth", code: "AUTH_INVALID", status: 401, severity: "warning", tenant_id: null })
    expect(JSON.stringify(row)).not.toContain(badKey)
  })

  test("a defect is ledgered critical with its stack; the response has none", async () => {
    const response = await server.fetch("/__test/defect")
    const problem = await expectProblem(response, 500, "INTERNAL_ERROR")
    const row = await ledgerRecord(server, problem.error_id)
    expect(row).toMatchObject({ type: "internal", code: "INTERNAL_ERROR", status: 500, severity: "critical" })
    expect(row.message).toContain("boom")
    expect(row.stack).toContain("boom")
    expect(row.stack).toMatch(/at .+/)
    expect(JSON.stringify(problem)).not.toContain("boom")
  })
})

/** `GET /v1/admin/errors/stats`, as the admin token reads it. */
const readStats = async () =>
  (await (await server.admin("/v1/admin/errors/stats")).json()) as {
    total: number
    by_code: Record<string, number>
    by_status: Record<string, number>
    by_severity: Record<string, number>
    unresolved_count: number
    last_error: { error_id: string } | null
  }

describe("operators' routes", () => {
  test("list filters, stats, resolve with notes", async () => {
    const own = await server.createTenant()
    const sessionId = crypto.randomUUID()
    const first = await expectProblem(await server.fetch(`/v1/sessions/${sessionId}`, withKey(own.api_key)), 404, "SESSION_NOT_FOUND")
    await ledgerRecord(server, first.error_id)

    const bySession = (await (await server.admin(`/v1/admin/errors?session_id=${sessionId}`)).json()) as { data: Array<{ error_id: string }> }
    expect(bySession.data.map((row) => row.error_id)).toEqual([first.error_id])

    const byCode = (await (await server.admin("/v1/admin/errors?code=SESSION_NOT_FOUND&severity=warning&resolved=false&limit=500")).json()) as {
      data: Array<{ code: string; severity: string; occurred_at: string }>
    }
    expect(byCode.data.length).toBeGreaterThan(0)
    expect(byCode.data.every((row) => row.code === "SESSION_NOT_FOUND" && row.severity === "warning")).toBe(true)
    const times = byCode.data.map((row) => row.occurred_at)
    expect([...times].sort().reverse()).toEqual(times)

    await expectProblem(await server.admin("/v1/admin/errors?severity=loud"), 400, "VALIDATION_FAILED")

    const resolved = await server.admin(`/v1/admin/errors/${first.error_id}/resolve`, {
      method: "POST",
      body: JSON.stringify({ notes: "client used a stale id" })
    })
    expect(resolved.status).toBe(200)
    const record = (await resolved.json()) as { resolved: boolean; resolved_at: string; notes: string }
    expect(record).toMatchObject({ resolved: true, notes: "client used a stale id" })
    expect(new Date(record.resolved_at).toISOString()).toBe(record.resolved_at)

    const stats = await readStats()
    expect(stats.by_code.SESSION_NOT_FOUND).toBeGreaterThan(0)
    expect(stats.by_status["404"]).toBeGreaterThan(0)
    expect(stats.by_severity.warning).toBeGreaterThan(0)
    expect(stats.total).toBeGreaterThanOrEqual(stats.unresolved_count + 1)
    expect(stats.last_error).not.toBeNull()

    await expectProblem(
      await server.admin(`/v1/admin/errors/${crypto.randomUUID()}/resolve`, { method: "POST", body: "{}" }),
      404,
      "ERROR_NOT_FOUND"
    )
    await expectProblem(await server.admin(`/v1/admin/errors/${crypto.randomUUID()}`), 404, "ERROR_NOT_FOUND")
  })
})

describe("stats while rows are being written", () => {
  test("by code, by status and by severity add up to one total, and the unresolved count is within it, whatever lands meanwhile", async () => {
    const own = await server.createTenant()
    let writing = true
    // 404s keep the ledger's writer busy while the stats are read.
    const writer = (async () => {
      while (writing) await Promise.all(Array.from({ length: 8 }, () => server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(own.api_key))))
    })()
    try {
      const sum = (counts: Record<string, number>) => Object.values(counts).reduce((total, n) => total + n, 0)
      for (let i = 0; i < 30; i++) {
        const stats = await readStats()
        expect(sum(stats.by_code)).toBe(stats.total)
        expect(sum(stats.by_status)).toBe(stats.total)
        expect(sum(stats.by_severity)).toBe(stats.total)
        expect(stats.unresolved_count).toBeLessThanOrEqual(stats.total)
      }
    } finally {
      writing = false
      await writer
    }
  })
})

describe("ledger down", () => {
  sqliteOnly("renames the ledger table through a second SQLite connection")("requests still answer correctly, stderr gets one JSON line per error, the dropped counter rises", async () => {
    const broken = await startServer()
    const other = new Database(broken.databaseFile)
    const written: Array<string> = []
    const originalWrite = process.stderr.write.bind(process.stderr)
    try {
      const owner = await broken.createTenant()
      await eventually(async () => ((await broken.admin("/v1/admin/errors?limit=1")).status === 200 ? true : undefined))
      other.run("ALTER TABLE errors RENAME TO errors_away")
      const droppedBefore = Effect.runSync(Metric.value(ledgerDroppedTotal)).count
      process.stderr.write = ((chunk: string | Uint8Array) => {
        written.push(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk))
        return true
      }) as typeof process.stderr.write

      const problems = []
      for (let i = 0; i < 3; i++) {
        const started = performance.now()
        const response = await broken.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(owner.api_key))
        problems.push(await expectProblem(response, 404, "SESSION_NOT_FOUND"))
        expect(performance.now() - started).toBeLessThan(1000)
      }
      const lines = await eventually(async () => {
        const found = written.flatMap((chunk) => chunk.split("\n")).filter((line) => line.startsWith("{"))
        return found.length >= 3 ? found : undefined
      })
      const records = lines.map((line) => JSON.parse(line) as { ledger: string; error_id: string; code: string; reason: string })
      expect(records.map((record) => record.error_id).sort()).toEqual(problems.map((problem) => problem.error_id).sort())
      expect(records.every((record) => record.ledger === "dropped" && record.code === "SESSION_NOT_FOUND")).toBe(true)
      expect(Effect.runSync(Metric.value(ledgerDroppedTotal)).count - droppedBefore).toBeGreaterThanOrEqual(3)
    } finally {
      process.stderr.write = originalWrite
      other.run("ALTER TABLE errors_away RENAME TO errors")
      other.close()
      await broken.close()
    }
  })
})

describe("shutdown", () => {
  sqliteOnly("reads the SQLite file after close")("errors recorded just before the server closes are in the database after", async () => {
    const closing = await startServer()
    const owner = await closing.createTenant()
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) {
      ids.push((await expectProblem(await closing.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(owner.api_key)), 404, "SESSION_NOT_FOUND")).error_id)
    }
    const file = closing.databaseFile
    await closing.close({ keepFiles: true })
    const db = new Database(file)
    const rows = db.query(`SELECT error_id FROM errors WHERE error_id IN (${ids.map(() => "?").join(",")})`).all(...ids)
    db.close()
    expect(rows.length).toBe(5)
  })
})
