/** Work is never left running: past the deadline it is interrupted (504), and so when the client leaves. */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { eventually, expectProblem, hangInterruptions, hangRoute, hangStarts, ledgerRecord, startServer, type TestServer } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

let server: TestServer

beforeAll(async () => {
  server = await startServer({ extraRoutes: hangRoute, requestTimeoutMillis: 200 })
})
afterAll(() => server.close())

test("a handler held past BULWARK_REQUEST_TIMEOUT_MS gives 504 TIMEOUT and its fiber is interrupted", async () => {
  const before = hangInterruptions.count
  const fault = faultMatrix(server, "handler-hangs", { broken: "a handler's work", how: "a test route that never finishes, `BULWARK_REQUEST_TIMEOUT_MS=200`" })
  const started = performance.now()
  const response = await server.fetch("/__test/hang")
  const problem = await expectProblem(response, 504, "TIMEOUT")
  await fault.saw(problem)
  await fault.recovered()
  // The route never finishes, so any answer is the deadline's; the bound only tells the 200 ms setting from the 10 s default.
  expect(performance.now() - started).toBeLessThan(5000)
  expect(hangInterruptions.count).toBe(before + 1)
  expect(await ledgerRecord(server, problem.error_id)).toMatchObject({ code: "TIMEOUT", status: 504, severity: "error" })
}, 15_000)

test("a client that disconnects interrupts the work it started", async () => {
  // A deadline far past the test's patience, so that only the client's leaving can interrupt the work.
  const patient = await startServer({ extraRoutes: hangRoute, requestTimeoutMillis: 60_000 })
  try {
    const before = hangInterruptions.count
    const started = hangStarts.count
    const controller = new AbortController()
    const request = patient.fetch("/__test/hang", { signal: controller.signal }).catch((error: unknown) => error)
    // Left once the work has begun, however long the request took to arrive.
    await eventually(async () => (hangStarts.count === started + 1 ? true : undefined), 5000)
    controller.abort()
    await request
    await eventually(async () => (hangInterruptions.count === before + 1 ? true : undefined), 5000)
    expect(hangInterruptions.count).toBe(before + 1)
  } finally {
    await patient.close()
  }
}, 20_000)
