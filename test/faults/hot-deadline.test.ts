/**
 * The hot read (`GET /v1/sessions/{id}`, served from Bun's router with a deadline of its own) keeps
 * the rules of every route: held past the deadline by a stalled dependency it is 504 `TIMEOUT` and
 * ledgered; a client that leaves interrupts it, and that is a client abort, never a 500.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultCacheResilience } from "../../layers/cache/Cache.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = requireRedisServer()
const DEADLINE_MILLIS = 150
/** Longer than the deadline; waited out rather than lifted (a paused Redis queues `CLIENT UNPAUSE` too). */
const PAUSE_MILLIS = 600

const pauseRedis = async (redis: OwnRedis): Promise<() => Promise<void>> => {
  expect(await redis.cli("CLIENT", "PAUSE", String(PAUSE_MILLIS), "ALL")).toBe("OK")
  const over = Date.now() + PAUSE_MILLIS
  return () => Bun.sleep(Math.max(0, over - Date.now()) + 20)
}

/** The number of hot reads the duration histogram has seen with this status. */
const hotReadsWithStatus = async (server: TestServer, status: number): Promise<number> => {
  const metrics = await (await server.admin("/metrics")).text()
  const line = metrics.split("\n").find((l) =>
    l.startsWith("http_server_request_duration_count{") && l.includes('http_route="/v1/sessions/:id"') &&
    l.includes(`http_response_status_code="${status}"`)
  )
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe.skipIf(!available)("the hot read's deadline", () => {
  let redis: OwnRedis
  let server: TestServer
  let apiKey: string
  let sessionId: string

  beforeAll(async () => {
    redis = await startOwnRedis()
    // Redis calls may wait far longer than the request may: only the request deadline can end them.
    server = await startServer({
      redisUrl: redis.url,
      requestTimeoutMillis: DEADLINE_MILLIS,
      cacheResilience: { breaker: { ...defaultCacheResilience.breaker, callTimeout: "10 seconds", slowCallDuration: "10 seconds" } }
    })
    apiKey = (await server.createTenant()).api_key
    const created = await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: "{}" }))
    sessionId = ((await created.json()) as { id: string }).id
  }, 30_000)
  afterAll(async () => {
    await server.close()
    await redis.stop()
  })

  test("a hot read held by a paused Redis past BULWARK_REQUEST_TIMEOUT_MS is 504 TIMEOUT, ledgered; the next read is served", async () => {
    expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(apiKey))).status).toBe(200)
    const fault = faultMatrix(server, "redis-stalls-hot-read", { broken: "Redis (cache) under the hot read", how: "`CLIENT PAUSE 600 ALL` with a 10 s cache call timeout and `BULWARK_REQUEST_TIMEOUT_MS=150`; `GET /v1/sessions/{id}`", dependency: "cache" })
    const pauseOver = await pauseRedis(redis)
    const started = performance.now()
    const response = await server.fetch(`/v1/sessions/${sessionId}`, withKey(apiKey))
    const elapsed = performance.now() - started
    const problem = await expectProblem(response, 504, "TIMEOUT")
    await fault.saw(problem)
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MILLIS - 5)
    // Not timed from above: a read that outlived the pause would have been served (200), so the 504 is the deadline's.
    expect(response.headers.get("x-request-id")).toBeTruthy()
    expect(await ledgerRecord(server, problem.error_id)).toMatchObject({
      code: "TIMEOUT",
      status: 504,
      severity: "error",
      method: "GET",
      route: "/v1/sessions/:id",
      session_id: sessionId
    })
    await pauseOver()
    fault.healed()
    const next = await server.fetch(`/v1/sessions/${sessionId}`, withKey(apiKey))
    expect(next.status).toBe(200)
    await fault.recovered()
    expect(((await next.json()) as { id: string }).id).toBe(sessionId)
  })

  test("a client that leaves a stalled hot read interrupts it: recorded as a client abort (499), never ledgered as a 500", async () => {
    const abortsBefore = await hotReadsWithStatus(server, 499)
    // The metrics are the process's: another run of this file in the same process counted its own.
    const timeoutsBefore = await hotReadsWithStatus(server, 504)
    const pauseOver = await pauseRedis(redis)
    const controller = new AbortController()
    const request = server.fetch(`/v1/sessions/${sessionId}`, withKey(apiKey, { signal: controller.signal })).catch((error: unknown) => error)
    await Bun.sleep(30)
    controller.abort()
    expect(await request).toBeInstanceOf(Error)
    await pauseOver()
    await eventually(async () => ((await hotReadsWithStatus(server, 499)) === abortsBefore + 1 ? true : undefined), 2000)
    const internal = (await (await server.admin("/v1/admin/errors?code=INTERNAL_ERROR")).json()) as { data: ReadonlyArray<unknown> }
    expect(internal.data).toEqual([])
    expect(await hotReadsWithStatus(server, 504)).toBe(timeoutsBefore)
  })
})
