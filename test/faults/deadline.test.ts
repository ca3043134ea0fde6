/** Work is never left running: past the deadline it is interrupted (504), and so when the client leaves. */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { eventually, expectProblem, hangInterruptions, hangRoute, ledgerRecord, startServer, type TestServer } from "../support/server.js"
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
  const before = hangInterruptions.count
  const controller = new AbortController()
  const request = server.fetch("/__test/hang", { signal: controller.signal }).catch((error: unknown) => error)
  await Bun.sleep(30)
  controller.abort()
  await request
  await eventually(async () => (hangInterruptions.count === before + 1 ? true : undefined), 1000)
  expect(hangInterruptions.count).toBe(before + 1)
})
