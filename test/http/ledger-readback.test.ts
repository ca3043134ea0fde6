/**
 * The ledger reads back every row it wrote (SPEC §6): requests with bodies that are not JSON, too
 * long, binary, or with huge headers leave rows that list, show, filter, count and report in
 * `/health` like any other; a row that does not decode is shown with what can be read, and that
 * failure is ledgered itself.
 */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { sqliteOnly } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, type LedgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let tenant: { id: string; api_key: string }

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
})
afterAll(() => server.close())

const listed = async (query: string): Promise<Array<LedgerRecord>> => {
  const response = await server.admin(`/v1/admin/errors${query}`)
  if (response.status !== 200) throw new Error(`listing the ledger answered ${response.status}: ${await response.text()}`)
  return ((await response.json()) as { data: Array<LedgerRecord> }).data
}

/** Every read path of the ledger answers 200 and names this row. */
const expectReadable = async (errorId: string) => {
  const row = await ledgerRecord(server, errorId)
  expect((await listed("?limit=500")).map((record) => record.error_id)).toContain(errorId)
  expect((await listed(`?code=${row.code}&severity=${row.severity}&type=${row.type}&limit=500`)).map((record) => record.error_id)).toContain(errorId)
  const stats = await server.admin("/v1/admin/errors/stats")
  expect(stats.status).toBe(200)
  expect(((await stats.json()) as { total: number }).total).toBeGreaterThan(0)
  const health = await server.admin("/health")
  expect(health.status).toBe(200)
  expect(((await health.json()) as { errors: { last_error: unknown } }).errors.last_error).not.toBeNull()
  return row
}

describe("rows of misbehaving requests read back", () => {
  test("a malformed JSON body is kept as text, said to be text", async () => {
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: `{"title":` }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    const row = await expectReadable(problem.error_id)
    expect(row).toMatchObject({ request_payload: `{"title":`, request_payload_kind: "text", route: "/v1/sessions" })
  })

  test("a message over 64 KiB is kept as its first 8 KiB, said to be truncated", async () => {
    const session = (await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }
    const response = await server.fetch(
      `/v1/sessions/${session.id}/messages`,
      withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "x".repeat(70_000) }) })
    )
    const problem = await expectProblem(response, 413, "PAYLOAD_TOO_LARGE")
    const row = await expectReadable(problem.error_id)
    expect(row.request_payload_kind).toBe("truncated")
    expect(typeof row.request_payload).toBe("string")
    expect(Buffer.byteLength(row.request_payload as string)).toBeLessThanOrEqual(8 * 1024)
    expect(row.request_payload as string).toStartWith(`{"agent_id":"a","content":"xxx`)
  })

  test("a binary body is kept as text with replacement characters, said to be binary", async () => {
    const bytes = new Uint8Array([0xff, 0xfe, 0x00, 0x81, 0x7b, 0xc3, 0x28])
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: bytes }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    const row = await expectReadable(problem.error_id)
    expect(row.request_payload_kind).toBe("binary")
    expect(row.request_payload as string).toContain("\uFFFD")
  })

  test("a huge header is kept short, and the row reads back", async () => {
    const userAgent = "agent/" + "u".repeat(12_000)
    const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key, { headers: { "user-agent": userAgent } }))
    const problem = await expectProblem(response, 404, "SESSION_NOT_FOUND")
    const row = await expectReadable(problem.error_id)
    expect(row.user_agent?.length).toBe(1024)
    expect(userAgent).toStartWith(row.user_agent!)
  })

  test("a JSON body is kept as JSON, said to be json", async () => {
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: 7 }) }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    const row = await expectReadable(problem.error_id)
    expect(row).toMatchObject({ request_payload: { title: 7 }, request_payload_kind: "json" })
  })
})

describe("rows that do not decode", () => {
  sqliteOnly("writes rows through a second SQLite connection")("are listed with what can be read, and the failure is ledgered once", async () => {
    const seeded = await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
    await ledgerRecord(server, seeded.error_id)
    const badPayload = crypto.randomUUID()
    const badColumns = crypto.randomUUID()
    const legacy = crypto.randomUUID()
    const db = new Database(server.databaseFile)
    try {
      const insert = db.prepare(
        `INSERT INTO errors (error_id, occurred_at, type, code, status, message, fingerprint, severity, request_payload, request_payload_kind)
         VALUES (?, ?, ?, 'VALIDATION_FAILED', ?, 'seeded', 'f', ?, ?, ?)`
      )
      const at = new Date().toISOString()
      insert.run(badPayload, at, "validation", 400, "warning", `{"cut":`, "json")
      insert.run(badColumns, at, "no-such-type", "four hundred", "loud", `{"ok":true}`, "json")
      insert.run(legacy, at, "validation", 400, "warning", `not json`, null)
    } finally {
      db.close()
    }

    const rows = await listed("?limit=500")
    const byId = new Map(rows.map((row) => [row.error_id, row]))
    expect(byId.get(badPayload)).toMatchObject({ request_payload: `{"cut":`, request_payload_kind: "unreadable", code: "VALIDATION_FAILED" })
    expect(byId.get(badPayload)?.unreadable_fields).toBeUndefined()
    expect(byId.get(legacy)).toMatchObject({ request_payload: "not json", request_payload_kind: "unreadable" })
    expect(byId.get(badColumns)).toMatchObject({
      type: "internal",
      status: 0,
      severity: "critical",
      code: "VALIDATION_FAILED",
      message: "seeded",
      request_payload: { ok: true },
      request_payload_kind: "json"
    })
    expect([...(byId.get(badColumns)?.unreadable_fields ?? [])].sort()).toEqual(["severity", "status", "type"])

    const shown = await server.admin(`/v1/admin/errors/${badColumns}`)
    expect(shown.status).toBe(200)
    expect((await (await server.admin("/v1/admin/errors/stats")).json()) as object).toHaveProperty("total")

    // Each unreadable row is itself ledgered, once, as a defect of the ledger's reading.
    const reports = await eventually(async () => {
      const found = (await listed("?code=INTERNAL_ERROR&limit=500")).filter((row) => row.route === "ledger:read")
      return found.length >= 3 ? found : undefined
    })
    for (const id of [badPayload, badColumns, legacy]) {
      expect(reports.filter((row) => row.message.includes(id))).toHaveLength(1)
    }
    expect(reports.every((row) => row.type === "database" && row.severity === "critical")).toBe(true)
    await listed("?limit=500")
    await Bun.sleep(100)
    expect((await listed("?code=INTERNAL_ERROR&limit=500")).filter((row) => row.route === "ledger:read")).toHaveLength(3)
  })
})
