/**
 * After a burst of requests, once they stop, the heap is collected in full: the engine would
 * otherwise keep the burst's garbage (and the process its memory) until it next chose to collect.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { LogLevel } from "effect"
import { captureLogLines } from "../support/logLines.js"
import { startServer, type TestServer, withKey } from "../support/server.js"

const BURST = 40
const QUIET_MILLIS = 200

let server: TestServer
const logged: Array<string> = []
let restoreLog = () => {}

beforeAll(async () => {
  restoreLog = captureLogLines(logged)
  server = await startServer({ logLevel: LogLevel.Info, collectAfterRequests: { threshold: BURST, quiet: `${QUIET_MILLIS} millis` } })
})
afterAll(async () => {
  await server.close()
  restoreLog()
})

const collections = () =>
  logged.flatMap((line) => {
    const entry = JSON.parse(line) as { message: string; annotations: Record<string, unknown> }
    return entry.message === "full collection after a burst of requests" ? [entry.annotations] : []
  })

test("fewer requests than a burst collect nothing; a burst is collected once, when the requests stop, and the pause and the memory are logged", async () => {
  const tenant = await server.createTenant()
  const session = ((await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }).id
  await Bun.sleep(QUIET_MILLIS * 3)
  expect(collections()).toEqual([])

  for (let i = 0; i < BURST; i++) expect((await server.fetch(`/v1/sessions/${session}`, withKey(tenant.api_key))).status).toBe(200)
  const deadline = Date.now() + 3000
  while (collections().length === 0 && Date.now() < deadline) await Bun.sleep(20)
  const [collection, ...more] = collections()
  expect(more).toEqual([])
  expect(collection).toMatchObject({ pause_ms: expect.any(Number), rss_before_mb: expect.any(Number), rss_after_mb: expect.any(Number) })

  // Quiet again: nothing more runs until another burst.
  await Bun.sleep(QUIET_MILLIS * 3)
  expect(collections()).toHaveLength(1)
})
