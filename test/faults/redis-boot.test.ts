/**
 * SPEC §5: a Redis that is down when the process starts is one that went down later. The server
 * starts (degraded, or not ready when the cache is required) and heals when Redis comes, with no
 * restart. A malformed REDIS_URL is configuration and stops the start.
 */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type CacheBreakerOptions, defaultCacheResilience } from "../../layers/cache/Cache.js"
import { eventually, expectProblem, startServer, withKey } from "../support/server.js"
import { requireRedisServer, startOwnRedis } from "../support/redis.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = requireRedisServer()

/** A short open time, so that healing is seen within a second or two of Redis coming. */
const cacheResilience: CacheBreakerOptions = { breaker: { ...defaultCacheResilience.breaker, openDuration: "200 millis", maxOpenDuration: "400 millis" } }

/** Generous: the client reconnects with a backoff of its own, and the machine may be busy. */
const HEAL_WITHIN_MILLIS = 15_000

describe.skipIf(!available)("Redis down at start", () => {
  test("BULWARK_CACHE_REQUIRED=true: the server starts not ready (503 CACHE_UNAVAILABLE with Retry-After), and is ready once Redis comes, with no restart", async () => {
    const redis = await startOwnRedis({ started: false })
    const server = await startServer({ redisUrl: redis.url, cacheRequired: true, cacheResilience })
    const fault = faultMatrix(server, "redis-down-at-start-required", { broken: "Redis (cache, `BULWARK_CACHE_REQUIRED=true`)", how: "not yet started when the server starts; started later; `GET /v1/sessions`", dependency: "cache" })
    try {
      expect((await server.fetch("/health/live")).status).toBe(200)
      const notReady = await expectProblem(await server.fetch("/health/ready"), 503, "CACHE_UNAVAILABLE")
      expect(notReady.retry_after_seconds).toBeGreaterThanOrEqual(1)
      // The admin token needs no cache; a client's request does (its key and its rate count), so it is refused.
      const tenant = await server.createTenant()
      const refusedRead = await expectProblem(await server.fetch("/v1/sessions", withKey(tenant.api_key)), 503, "CACHE_UNAVAILABLE")
      expect(refusedRead.retry_after_seconds).toBeGreaterThanOrEqual(1)
      await fault.saw(refusedRead)
      await expectProblem(
        await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "early" }) })),
        503,
        "CACHE_UNAVAILABLE"
      )

      await redis.start()
      fault.healed()
      await eventually(async () => ((await server.fetch("/health/ready")).status === 200 ? true : undefined), HEAL_WITHIN_MILLIS)
      await fault.recovered()
      const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "after" }) }))
      expect(created.status).toBe(201)
      const sessionId = ((await created.json()) as { id: string }).id
      expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))).status).toBe(200)
      expect(await redis.cli("EXISTS", `session:${tenant.id}:${sessionId}`)).toBe("1")
      const breakers = (await (await server.admin("/v1/admin/breakers")).json()) as { data: Array<{ dependency: string; state: string }> }
      expect(breakers.data.find((row) => row.dependency === "cache")?.state).toBe("closed")
      // What clients were refused for meanwhile is in the ledger, each row naming its cause.
      const refused = await eventually(async () => {
        const listed = (await (await server.admin("/v1/admin/errors?code=CACHE_UNAVAILABLE&limit=100")).json()) as {
          data: Array<{ message: string; status: number; type: string }>
        }
        return listed.data.length >= 2 ? listed.data : undefined
      })
      for (const row of refused) {
        expect(row).toMatchObject({ status: 503, type: "cache" })
        expect(row.message).not.toContain("null")
      }
    } finally {
      await server.close()
      await redis.stop()
    }
  }, 30_000)

  test("not required: the server starts degraded and serves from the database, and uses Redis once it comes, with no restart", async () => {
    const redis = await startOwnRedis({ started: false })
    const server = await startServer({ redisUrl: redis.url, cacheResilience })
    const fault = faultMatrix(server, "redis-down-at-start", { broken: "Redis (cache, not required)", how: "not yet started when the server starts; started later; `GET /v1/sessions/{id}`", dependency: "cache", ledgerCode: "CACHE_UNAVAILABLE" })
    try {
      expect((await server.fetch("/health/ready")).status).toBe(200)
      const health = await server.admin("/health")
      expect(health.status).toBe(200)
      expect(await health.json()).toMatchObject({ status: "degraded", dependencies: { cache: { status: "down", kind: "redis" } } })
      const tenant = await server.createTenant()
      const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "before" }) }))
      expect(created.status).toBe(201)
      const sessionId = ((await created.json()) as { id: string }).id
      const read = await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))
      expect(read.status).toBe(200)
      await fault.saw(read)
      expect(await read.json()).toMatchObject({ id: sessionId, title: "before" })

      await redis.start()
      fault.healed()
      await eventually(async () => {
        const report = (await (await server.admin("/health")).json()) as { status: string }
        return report.status === "ok" ? true : undefined
      }, HEAL_WITHIN_MILLIS)
      // Reads fill the cache again once its breaker has closed.
      await eventually(async () => {
        await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))
        return (await redis.cli("EXISTS", `session:${tenant.id}:${sessionId}`)) === "1" ? true : undefined
      }, HEAL_WITHIN_MILLIS)
      await fault.recovered()
    } finally {
      await server.close()
      await redis.stop()
    }
  }, 30_000)
})

describe("a malformed REDIS_URL", () => {
  test("stops the start: exit 1 and one line naming REDIS_URL, without echoing the URL", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "bulwark-redis-url-"))
    try {
      const child = Bun.spawn(["bun", join(import.meta.dir, "..", "..", "src", "main.ts")], {
        cwd,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", REDIS_URL: "redis://user:s3cretpass@localhost:notaport" },
        stdout: "pipe",
        stderr: "pipe"
      })
      const timer = setTimeout(() => child.kill(), 20_000)
      const exitCode = await child.exited
      clearTimeout(timer)
      const stderr = (await new Response(child.stderr).text()).trim()
      expect(exitCode).toBe(1)
      expect(stderr.split("\n")).toHaveLength(1)
      expect(stderr).toContain("REDIS_URL")
      expect(stderr).not.toContain("s3cretpass")
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  }, 30_000)
})
