/**
 * Rate limits counted in the database (what instances sharing a PostgreSQL without Redis use), here
 * on one SQLite file shared by two servers: their leases add up to the limit, never past it, and a
 * used-up window is refused by both with 429 and `Retry-After`.
 */
import { Database as BunDatabase } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { readRows, sqliteOnly } from "../support/postgres.js"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

const LIMIT = 20

describe("rate limits counted in a shared database", () => {
  let first: TestServer
  let second: TestServer

  beforeAll(async () => {
    // An hour's window, so that no test straddles two windows.
    const rateLimit = { limit: LIMIT, windowMillis: 3_600_000 }
    first = await startServer({ rateLimit, rateLimitStore: "database" })
    second = await startServer({ rateLimit, rateLimitStore: "database", databaseFile: first.databaseFile })
  })
  afterAll(async () => {
    await second.close()
    await first.close()
  })

  const ask = async (server: TestServer, key: string) => {
    const response = await server.fetch("/v1/sessions?limit=1", withKey(key))
    if (response.status === 429) await expectProblem(response, 429, "RATE_LIMITED")
    else await response.body?.cancel()
    return response.status
  }

  test("requests alternating between the servers are served up to the limit exactly, then refused by both", async () => {
    const { api_key } = await first.createTenant()
    const statuses: Array<number> = []
    for (let i = 0; i < LIMIT + 10; i++) statuses.push(await ask(i % 2 === 0 ? first : second, api_key))
    expect(statuses.filter((status) => status === 200).length).toBe(LIMIT)
    expect(statuses.slice(LIMIT)).toEqual(Array.from({ length: 10 }, () => 429))
    const refused = await first.fetch("/v1/sessions?limit=1", withKey(api_key))
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0)
    await refused.body?.cancel()
  })

  test("concurrent requests over both servers never pass the limit, and the units taken are counted in the database", async () => {
    const { api_key, api_key_id } = await first.createTenant()
    const statuses = await Promise.all(Array.from({ length: 60 }, (_, i) => ask(i % 2 === 0 ? first : second, api_key)))
    const served = statuses.filter((status) => status === 200).length
    expect(statuses.filter((status) => status !== 200 && status !== 429)).toEqual([])
    expect(served).toBeLessThanOrEqual(LIMIT)
    // Units leased but not used by one server are lost to the other; leases shrink near the limit.
    expect(served).toBeGreaterThanOrEqual(LIMIT - 4)
    // BIGINT: PostgreSQL's driver gives it as text.
    const [row] = await readRows<{ taken: number | string }>(first.databaseUrl, "SELECT taken FROM rate_counts WHERE bucket = ?", [`key:${api_key_id}`])
    expect(Number(row?.taken)).toBeGreaterThanOrEqual(LIMIT)
  })

  sqliteOnly("holds SQLite's file lock")("when the database cannot take a lease, the request is refused with its 503 and Retry-After, never let through uncounted", async () => {
    const server = await startServer({ rateLimit: { limit: 1000, windowMillis: 3_600_000 }, rateLimitStore: "database" })
    try {
      const { api_key } = await server.createTenant()
      const created = await server.fetch("/v1/sessions", withKey(api_key, { method: "POST", body: "{}" }))
      const sessionId = ((await created.json()) as { id: string }).id
      // The key, the session and a lease (1000 / 8, at most 64 units) are now in memory: the hot
      // read needs the database only for the next lease.
      const read = () => server.fetch(`/v1/sessions/${sessionId}`, withKey(api_key))
      let served = 0
      const holder = new BunDatabase(server.databaseFile)
      try {
        for (; served < 200; served++) {
          if (served === 10) holder.run("BEGIN EXCLUSIVE")
          const response = await read()
          if (response.status !== 200) {
            const problem = await expectProblem(response, 503, "DATABASE_UNAVAILABLE")
            expect(problem.retry_after_seconds).toBeGreaterThan(0)
            break
          }
          await response.body?.cancel()
        }
      } finally {
        holder.run("ROLLBACK")
        holder.close()
      }
      // Refused once its lease ran out (it took 64 units, one of them by the create), not before.
      expect(served).toBe(63)
      expect((await read()).status).toBe(200)
    } finally {
      await server.close()
    }
  })
})
