/** Rate limits per key (per IP without credentials), their headers, and a limit shared through Redis. */
import { describe, expect, test } from "bun:test"
import { eventually, expectProblem, startServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"
import { requireRedisServer, startOwnRedis } from "../support/redis.js"

const headersOf = (response: Response) => ({
  limit: response.headers.get("ratelimit-limit"),
  remaining: response.headers.get("ratelimit-remaining"),
  reset: Number(response.headers.get("ratelimit-reset"))
})

describe("rate limits", () => {
  test("per key: RateLimit-* on every 2xx, then 429 with Retry-After, then recovery after the window", async () => {
    const server = await startServer({ rateLimit: { limit: 3, windowMillis: 400 } })
    try {
      const tenant = await server.createTenant()
      const other = await server.createTenant()
      // Aligned to the start of a window so all four requests fall in one.
      await Bun.sleep(400 - (Date.now() % 400))
      for (const remaining of ["2", "1", "0"]) {
        const response = await server.fetch("/v1/sessions", withKey(tenant.api_key))
        expect(response.status).toBe(200)
        expect(headersOf(response)).toMatchObject({ limit: "3", remaining })
        expect(headersOf(response).reset).toBeGreaterThanOrEqual(1)
      }
      const limited = await server.fetch("/v1/sessions", withKey(tenant.api_key))
      const problem = await expectProblem(limited, 429, "RATE_LIMITED")
      expect(limited.headers.get("retry-after")).toBe(String(problem.retry_after_seconds))
      expect(headersOf(limited)).toMatchObject({ limit: "3", remaining: "0" })
      // Another key has its own limit.
      expect((await server.fetch("/v1/sessions", withKey(other.api_key))).status).toBe(200)
      // The next window lets the key in again.
      const recovered = await eventually(async () => {
        const response = await server.fetch("/v1/sessions", withKey(tenant.api_key))
        await response.body?.cancel()
        return response.status === 200 ? response : undefined
      }, 1500)
      expect(headersOf(recovered).remaining).toBe("2")
    } finally {
      await server.close()
    }
  })

  test("a key and its access tokens share one limit; requests without credentials are limited by IP", async () => {
    const server = await startServer({ rateLimit: { limit: 4, windowMillis: 60_000 } })
    try {
      const tenant = await server.createTenant()
      const token = { access_token: await server.accessToken(tenant.api_key) }
      // The exchange above was anonymous: it counted against the IP, not the key.
      expect((await server.fetch("/v1/sessions", withKey(tenant.api_key))).status).toBe(200)
      expect((await server.fetch("/v1/sessions", withKey(token.access_token))).status).toBe(200)
      expect((await server.fetch("/v1/sessions", withKey(tenant.api_key))).status).toBe(200)
      expect((await server.fetch("/v1/sessions", withKey(token.access_token))).status).toBe(200)
      await expectProblem(await server.fetch("/v1/sessions", withKey(token.access_token)), 429, "RATE_LIMITED")

      const statuses = []
      for (let i = 0; i < 4; i++) statuses.push((await server.fetch("/openapi.json")).status)
      expect(statuses).toEqual([200, 200, 200, 429])
      // Health probes are never limited (and never touch the store the counters live in).
      for (let i = 0; i < 6; i++) expect((await server.fetch("/health/live")).status).toBe(200)
    } finally {
      await server.close()
    }
  })
})

describe.skipIf(!requireRedisServer())("rate limits through Redis", () => {
  sqliteOnly("copies key rows between two SQLite files")("two instances on one Redis share one limit; with Redis gone the limit still holds, in process, and is ledgered", async () => {
    const redis = await startOwnRedis()
    const rateLimit = { limit: 4, windowMillis: 60_000 }
    const first = await startServer({ redisUrl: redis.url, rateLimit })
    const second = await startServer({ redisUrl: redis.url, rateLimit })
    try {
      const tenant = await first.createTenant()
      const key = tenant.api_key
      // Each instance has its own SQLite file here; what they share is Redis, and the counter is
      // keyed by the key's id, so the key row is copied across.
      const { Database } = await import("bun:sqlite")
      const source = new Database(first.databaseFile)
      const target = new Database(second.databaseFile)
      const tenantRow = source.query("SELECT * FROM tenants WHERE id = ?").get(tenant.id) as Record<string, string>
      const keyRow = source.query("SELECT * FROM api_keys WHERE id = ?").get(tenant.api_key_id) as Record<string, string | number>
      target.query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)").run(tenantRow.id!, tenantRow.name!, tenantRow.created_at!)
      target.query(
        "INSERT INTO api_keys (id, tenant_id, name, key_hash, allowed_agents, is_admin, token_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
      ).run(keyRow.id!, keyRow.tenant_id!, keyRow.name!, keyRow.key_hash!, keyRow.allowed_agents!, keyRow.is_admin!, keyRow.token_version!, keyRow.created_at!)
      source.close()
      target.close()

      expect((await first.fetch("/v1/sessions", withKey(key))).status).toBe(200)
      expect((await second.fetch("/v1/sessions", withKey(key))).status).toBe(200)
      expect((await first.fetch("/v1/sessions", withKey(key))).status).toBe(200)
      expect((await second.fetch("/v1/sessions", withKey(key))).status).toBe(200)
      await expectProblem(await first.fetch("/v1/sessions", withKey(key)), 429, "RATE_LIMITED")
      await expectProblem(await second.fetch("/v1/sessions", withKey(key)), 429, "RATE_LIMITED")

      // Redis dies: the cache is not required, so the limit is counted in process, never dropped.
      await redis.kill()
      const owner = await first.createTenant()
      const statuses = []
      for (let i = 0; i < 5; i++) statuses.push((await first.fetch("/v1/sessions", withKey(owner.api_key))).status)
      expect(statuses).toEqual([200, 200, 200, 200, 429])
      const metrics = await (await first.admin("/metrics")).text()
      expect(Number(/^bulwark_rate_limit_fallbacks_total (\d+)$/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThanOrEqual(5)
      const rows = await eventually(async () => {
        const listed = (await (await first.admin("/v1/admin/errors?code=CACHE_UNAVAILABLE")).json()) as { data: Array<{ severity: string }> }
        return listed.data.length > 0 ? listed.data : undefined
      })
      expect(rows.every((row) => row.severity === "warning")).toBe(true)
    } finally {
      await first.close()
      await second.close()
      await redis.stop()
    }
  }, 30_000)
})
