/** The cache's Redis dies, stalls and returns garbage: clients keep getting correct answers. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { eventually, expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"
import { defaultCacheResilience } from "../../layers/cache/Cache.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = requireRedisServer()

describe.skipIf(!available)("Redis faults", () => {
  let redis: OwnRedis
  let server: TestServer
  let tenant: { id: string; api_key: string }
  let sessionId: string
  const cacheKey = () => `session:${tenant.id}:${sessionId}`
  const read = async () => {
    const started = performance.now()
    const response = await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))
    const body = (await response.json()) as { id: string; title: string }
    return { status: response.status, body, millis: performance.now() - started, response }
  }

  beforeAll(async () => {
    redis = await startOwnRedis()
    // A short open time, so the recovery below is seen in well under a second.
    server = await startServer({
      redisUrl: redis.url,
      cacheResilience: { breaker: { ...defaultCacheResilience.breaker, openDuration: "200 millis", maxOpenDuration: "400 millis" } }
    })
    tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "cached" }) }))
    sessionId = ((await created.json()) as { id: string }).id
  }, 30_000)
  afterAll(async () => {
    await server.close()
    await redis.stop()
  })

  test("reads fill the cache, and a delete invalidates it", async () => {
    expect((await read()).status).toBe(200)
    expect(await redis.cli("EXISTS", cacheKey())).toBe("1")
    const other = ((await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }).id
    await server.fetch(`/v1/sessions/${other}`, withKey(tenant.api_key))
    expect(await redis.cli("EXISTS", `session:${tenant.id}:${other}`)).toBe("1")
    expect((await server.fetch(`/v1/sessions/${other}`, withKey(tenant.api_key, { method: "DELETE" }))).status).toBe(204)
    expect(await redis.cli("EXISTS", `session:${tenant.id}:${other}`)).toBe("0")
    await expectProblem(await server.fetch(`/v1/sessions/${other}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
  })

  test("API keys are kept in process, never in Redis, and a deleted key is refused from the next request on", async () => {
    const owner = await server.createTenant()
    const keyResponse = await server.admin(`/v1/admin/tenants/${owner.id}/keys`, { method: "POST", body: "{}" })
    const key = (await keyResponse.json()) as { id: string; api_key: string }
    expect((await server.fetch("/v1/sessions", withKey(key.api_key))).status).toBe(200)
    // A copy in Redis could outlive a revocation whose delete Redis missed (SPEC §8).
    expect(await redis.cli("EVAL", "return #redis.call('KEYS', 'apikey:*')", "0")).toBe("0")
    expect((await server.admin(`/v1/admin/keys/${key.id}`, { method: "DELETE" })).status).toBe(204)
    await expectProblem(await server.fetch("/v1/sessions", withKey(key.api_key)), 401, "AUTH_REVOKED")
  })

  test("a cached value overwritten with garbage is deleted and re-read from the database", async () => {
    await read()
    await redis.cli("SET", cacheKey(), "{not json at all")
    const result = await read()
    expect(result.status).toBe(200)
    expect(result.body).toMatchObject({ id: sessionId, title: "cached" })
    expect(JSON.parse(await redis.cli("GET", cacheKey())).id).toBe(sessionId)
  })

  test("a paused Redis: reads stay correct and none waits for the pause to end", async () => {
    const fault = faultMatrix(server, "redis-paused", { broken: "Redis (cache, not required)", how: "`CLIENT PAUSE 1000 ALL`; `GET /v1/sessions/{id}`", dependency: "cache", ledgerCode: "CACHE_UNAVAILABLE" })
    // Waited out rather than lifted (a paused Redis queues `CLIENT UNPAUSE` too).
    const pauseMillis = 1000
    await redis.cli("CLIENT", "PAUSE", String(pauseMillis), "ALL")
    const pauseOver = Date.now() + pauseMillis
    for (let i = 0; i < 5; i++) {
      const result = await read()
      await fault.saw(result.response)
      expect(result.status).toBe(200)
      expect(result.body.id).toBe(sessionId)
      // The cache's call timeout is 100 ms; a read that waited on the pause would take all of it. Generous for a busy machine.
      expect(result.millis).toBeLessThan(pauseMillis * 0.7)
    }
    await Bun.sleep(Math.max(0, pauseOver - Date.now()) + 20)
    fault.healed()
    expect((await read()).status).toBe(200)
    // Recovered means the cache serves again: a probe got through and closed its breaker, and the
    // gauges say so (the next test starts from a closed breaker, not from this one's open window).
    await eventually(async () => {
      await read()
      const metrics = await (await server.admin("/metrics")).text()
      return /^bulwark_breaker_state\{dependency="cache"\} 0$/m.test(metrics) && /^bulwark_dependency_up\{dependency="cache"\} 1$/m.test(metrics) ? true : undefined
    }, 5000)
    await fault.recovered()
  })

  sqliteOnly("writes through a second SQLite connection")("a killed Redis: reads stay correct and fast, the failure is ledgered as a warning; it recovers after a restart", async () => {
    const fault = faultMatrix(server, "redis-killed", { broken: "Redis (cache, not required)", how: "SIGKILL of the test's own `redis-server`; `GET /v1/sessions/{id}`", dependency: "cache", ledgerCode: "CACHE_UNAVAILABLE" })
    await redis.kill()
    const latencies: Array<number> = []
    for (let i = 0; i < 20; i++) {
      const result = await read()
      await fault.saw(result.response)
      expect(result.status).toBe(200)
      expect(result.body.id).toBe(sessionId)
      latencies.push(result.millis)
    }
    // Once the breaker is open no request waits on the dead Redis: the typical read is under the cache's 100 ms call
    // timeout (the median, so that a busy machine's odd slow read does not decide it).
    expect(latencies.slice(10).sort((a, b) => a - b)[5]!).toBeLessThan(100)
    const rows = await eventually(async () => {
      const listed = (await (await server.admin("/v1/admin/errors?code=CACHE_UNAVAILABLE")).json()) as { data: Array<{ severity: string; type: string; status: number }> }
      return listed.data.length > 0 ? listed.data : undefined
    })
    expect(rows.every((row) => row.severity === "warning" && row.type === "cache")).toBe(true)
    const metrics = await (await server.admin("/metrics")).text()
    expect(metrics).toMatch(/^bulwark_dependency_up\{dependency="cache"\} 0$/m)
    const health = await server.admin("/health")
    expect(health.status).toBe(200)
    expect(await health.json()).toMatchObject({ status: "degraded", dependencies: { cache: { status: "down", kind: "redis" } } })

    // Meanwhile reads come from this process's own copy, which is still exactly as fresh as the
    // database: a change committed by another process is seen by the very next read.
    const other = new Database(server.databaseFile)
    try {
      other.run("UPDATE sessions SET title = 'changed elsewhere' WHERE id = ?", [sessionId])
    } finally {
      other.close()
    }
    expect((await read()).body.title).toBe("changed elsewhere")
    expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key, { method: "DELETE" }))).status).toBe(204)
    expect((await read()).status).toBe(404)
    sessionId = ((await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "cached" }) }))).json()) as { id: string }).id

    await redis.start()
    fault.healed()
    await redis.cli("DEL", cacheKey())
    // The breaker half-opens after its open time; the entry reappears once a probe has gone
    // through the reconnected client and closed it.
    await eventually(async () => {
      await read()
      return (await redis.cli("EXISTS", cacheKey())) === "1" ? true : undefined
    }, 5000)
    await fault.recovered()
    expect(await (await server.admin("/metrics")).text()).toMatch(/^bulwark_dependency_up\{dependency="cache"\} 1$/m)
  }, 30_000)
})

describe.skipIf(!available)("BULWARK_CACHE_REQUIRED=true", () => {
  test("with the cache down the same read is 503 CACHE_UNAVAILABLE with Retry-After", async () => {
    const redis = await startOwnRedis()
    const server = await startServer({ redisUrl: redis.url, cacheRequired: true })
    try {
      const tenant = await server.createTenant()
      const created = ((await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }).id
      expect((await server.fetch(`/v1/sessions/${created}`, withKey(tenant.api_key))).status).toBe(200)
      const fault = faultMatrix(server, "redis-killed-required", { broken: "Redis (cache, `BULWARK_CACHE_REQUIRED=true`)", how: "SIGKILL of the test's own `redis-server`; `GET /v1/sessions/{id}`", dependency: "cache" })
      await redis.kill()
      const response = await server.fetch(`/v1/sessions/${created}`, withKey(tenant.api_key))
      const problem = await expectProblem(response, 503, "CACHE_UNAVAILABLE")
      expect(problem.retry_after_seconds).toBeGreaterThanOrEqual(1)
      await fault.saw(problem)
      await redis.start()
      fault.healed()
      await eventually(async () => ((await server.fetch(`/v1/sessions/${created}`, withKey(tenant.api_key))).status === 200 ? true : undefined), 15_000)
      await fault.recovered()
    } finally {
      await server.close()
      await redis.stop()
    }
  }, 30_000)
})
