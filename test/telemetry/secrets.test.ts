/** No API key, token, password or cookie value reaches the ledger, a log line or a span. */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { LogLevel } from "effect"
import { defectRoute, eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { type Receiver, startReceiver } from "../support/otlp.js"
import { captureLogLines } from "../support/logLines.js"

let receiver: Receiver
let server: TestServer
const logged: Array<string> = []
let restoreLog = () => {}

beforeAll(async () => {
  receiver = startReceiver()
  restoreLog = captureLogLines(logged)
  server = await startServer({ otlpEndpoint: receiver.url, extraRoutes: defectRoute, logLevel: LogLevel.Debug })
})
afterAll(async () => {
  await server.close()
  restoreLog()
  receiver.stop()
})

test("a full run of failures leaves no secret in the ledger, the logs or the spans", async () => {
  const tenant = await server.createTenant()
  const password = "correct-horse-battery-staple"
  const cookie = "session=cookie-value-7a1f"
  const errorIds: Array<string> = []
  const record = async (response: Response, status: number, code: string) => {
    errorIds.push((await expectProblem(response, status, code)).error_id)
  }

  await record(
    await server.fetch("/v1/sessions", withKey(tenant.api_key, {
      method: "POST",
      headers: { cookie },
      body: JSON.stringify({ title: 1, metadata: { password, api_key: tenant.api_key, token: server.adminToken } })
    })),
    400,
    "VALIDATION_FAILED"
  )
  await record(await server.fetch("/v1/sessions", { headers: { authorization: `Bearer ${tenant.api_key}x`, cookie } }), 401, "AUTH_INVALID")
  await record(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key, { headers: { cookie } })), 404, "SESSION_NOT_FOUND")
  await record(await server.fetch("/v1/admin/tenants", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ name: "not-allowed", credentials: password }) })), 403, "FORBIDDEN")
  const accessToken = await server.accessToken(tenant.api_key)
  await record(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(accessToken)), 404, "SESSION_NOT_FOUND")
  await record(await server.fetch("/v1/sessions", withKey(`${accessToken}x`)), 401, "AUTH_INVALID")
  await record(
    await server.fetch("/v1/auth/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ api_key: `${tenant.api_key}0` }) }),
    401,
    "AUTH_INVALID"
  )
  await record(await server.fetch("/__test/defect", { headers: { authorization: `Bearer ${server.adminToken}` } }), 500, "INTERNAL_ERROR")

  const rows = await Promise.all(errorIds.map((errorId) => ledgerRecord(server, errorId)))
  await eventually(async () => {
    const traces = receiver.bodies.traces.join("\n")
    return errorIds.every((errorId) => traces.includes(errorId)) ? true : undefined
  }, 5000)
  const logs = logged.join("\n")
  for (const errorId of errorIds) expect(logs).toContain(errorId)

  const everything = { ledger: JSON.stringify(rows), logs, spans: receiver.bodies.traces.join("\n") }
  for (const [where, text] of Object.entries(everything)) {
    for (const secret of [tenant.api_key, server.adminToken, password, "cookie-value-7a1f", accessToken, accessToken.split(".")[2]!]) {
      if (text.includes(secret)) {
        const at = text.indexOf(secret)
        throw new Error(`a secret reached the ${where}: …${text.slice(Math.max(0, at - 120), at + 20)}…`)
      }
    }
  }
})

test("every error log line carries error_id, code, trace_id and request_id", async () => {
  const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, { headers: { authorization: "Bearer nope", "x-request-id": "req-log-1" } })
  const problem = await expectProblem(response, 401, "AUTH_INVALID")
  const line = await eventually(async () => logged.find((entry) => entry.includes(problem.error_id)))
  const entry = JSON.parse(line) as { annotations: Record<string, unknown>; logLevel: string }
  expect(entry.annotations).toMatchObject({ error_id: problem.error_id, code: "AUTH_INVALID", request_id: "req-log-1", status: 401 })
  expect(entry.annotations.trace_id).toBe(response.headers.get("x-trace-id"))
  expect(entry.logLevel).toBe("WARN")
})
