/**
 * The real write bulkhead, saturated (SPEC §5): with room for one write and no queue, one message
 * post waits behind a lock another PostgreSQL session holds on `messages`, holding the bulkhead's
 * only place; the next write is refused at once with 503 `OVERLOADED`, `Retry-After` and a ledger
 * row, and the waiting post still succeeds once the lock is released. On SQLite statements run
 * synchronously on the event loop, so two writes never wait in the bulkhead at once there.
 */
import type { ReservedSQL } from "bun"
import { SQL } from "bun"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultResilience, type DatabaseResilience } from "../../layers/database/Database.js"
import { bulwarkLockWaits, databaseNameOf, requireSharedPostgres, startServerOn } from "../support/pgFaults.js"
import { cloneDatabase, type TestDatabase } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, type TestServer, withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = await requireSharedPostgres("the write bulkhead test")

/** One write at a time, none waiting; a call timeout well past how long the test holds the lock. */
const resilience: DatabaseResilience = {
  ...defaultResilience,
  breaker: { ...defaultResilience.breaker, callTimeout: "10 seconds" },
  writes: { maxConcurrent: 1, maxQueued: 0 }
}

const holdLock = async (url: string, table: string) => {
  const pool = new SQL({ url, max: 1 })
  const session: ReservedSQL = await pool.reserve()
  await session.unsafe("BEGIN")
  await session.unsafe(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
  let released = false
  return {
    release: async () => {
      if (released) return
      released = true
      await session.unsafe("ROLLBACK")
      session.release()
      await pool.close({ timeout: 1 })
    }
  }
}

describe.skipIf(!available)("a saturated write bulkhead", () => {
  let database: TestDatabase
  let server: TestServer
  let apiKey: string
  let sessionId: string

  beforeAll(async () => {
    database = await cloneDatabase()
    server = await startServerOn(database.url, { databaseResilience: resilience, requestTimeoutMillis: 15_000 })
    // The start's own background writes may hold the one place for a moment: set up once they let go.
    apiKey = (await eventually(() => server.createTenant().catch(() => undefined), 5_000)).api_key
    sessionId = await eventually(async () => {
      const created = await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: "{}" }))
      return created.status === 201 ? ((await created.json()) as { id: string }).id : undefined
    }, 5_000)
  })
  afterAll(async () => {
    await server?.close()
    await database?.drop()
  })

  test("refuses the next write with 503 OVERLOADED, Retry-After and a ledger row; the waiting write still lands", async () => {
    const fault = faultMatrix(server, "write-bulkhead-full", { broken: "the write bulkhead", how: "room for one write, no queue; that write waits on another session's lock on `messages`; `POST .../messages`", dependency: "database" })
    const lock = await holdLock(database.url, "messages")
    try {
      const post = (content: string) =>
        server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(apiKey, { method: "POST", body: JSON.stringify({ agent_id: "a", content }) }))
      const waiting = post("waits behind the lock")
      // The first post's statement is waiting on the lock, inside the bulkhead's only place.
      await eventually(async () => ((await bulwarkLockWaits(databaseNameOf(database.url))) >= 1 ? true : undefined), 5_000)

      const refused = await post("finds the bulkhead full")
      const response = refused.clone()
      const problem = await expectProblem(refused, 503, "OVERLOADED")
      expect(response.headers.get("retry-after")).toBe("1")
      expect(problem.retry_after_seconds).toBe(1)
      expect(problem.detail).not.toContain("messages")
      await fault.saw(problem)

      // The ledger writer (20 ms linger) meets the same full bulkhead meanwhile: its row must wait, not be dropped.
      await Bun.sleep(300)
      await lock.release()
      fault.healed()
      const landed = await waiting
      expect(landed.status).toBe(201)
      await fault.recovered()

      const row = await ledgerRecord(server, problem.error_id)
      expect(row.code).toBe("OVERLOADED")
      expect(row.status).toBe(503)
      expect(row.route).toBe("/v1/sessions/:id/messages")
      expect(row.session_id).toBe(sessionId)
    } finally {
      await lock.release()
    }
  }, 30_000)
})
