/**
 * Another session holds `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` on a table Bulwark needs, longer
 * than the retry budget: the call's timeout cuts each wait, the statement is cancelled on the server
 * (not left waiting behind the lock), the client gets 503 `DATABASE_UNAVAILABLE` with `Retry-After`,
 * never a 500, and the first request after the lock is released succeeds. And PostgreSQL's own
 * statement timeout (57014) is the call's timeout (SPEC §8): the same typed 503, ledgered.
 */
import type { ReservedSQL } from "bun"
import { SQL } from "bun"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultResilience, type DatabaseResilience } from "../../layers/database/Database.js"
import { bulwarkLockWaits, databaseNameOf, requireSharedPostgres, startServerOn, withConnection } from "../support/pgFaults.js"
import { cloneDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, type TestServer, withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = await requireSharedPostgres("the PostgreSQL lock fault tests")

/** A short call timeout and open time, so a test waits out the retry budget in about a second. */
const resilience: DatabaseResilience = {
  ...defaultResilience,
  breaker: { ...defaultResilience.breaker, callTimeout: "250 millis", openDuration: "200 millis", maxOpenDuration: "400 millis" }
}

interface Lock {
  readonly release: () => Promise<void>
}

/** Holds an ACCESS EXCLUSIVE lock on `table` in an open transaction of another session until `release`. */
const holdLock = async (url: string, table: string): Promise<Lock> => {
  const pool = new SQL({ url, max: 1 })
  const session: ReservedSQL = await pool.reserve()
  await session.unsafe("BEGIN")
  await session.unsafe(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
  return {
    release: async () => {
      await session.unsafe("ROLLBACK")
      session.release()
      await pool.close({ timeout: 1 })
    }
  }
}

const post = (server: TestServer, key: string, sessionId: string, content: string) =>
  server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, { method: "POST", body: JSON.stringify({ agent_id: "a", content }) }))

const untilPosted = (server: TestServer, key: string, sessionId: string) =>
  eventually(async () => {
    const response = await post(server, key, sessionId, "after the lock")
    const status = response.status
    if (status !== 201 && status !== 503) throw new Error(`expected 201 or 503 after the lock, got ${status}: ${await response.text()}`)
    await response.body?.cancel()
    return status === 201 ? status : undefined
  }, 5000)

describe.skipIf(!available)("a table locked by another session", () => {
  let database: TestDatabase
  let server: TestServer
  let tenant: { id: string; api_key: string }
  let sessionId: string

  beforeAll(async () => {
    database = await cloneDatabase()
    server = await startServerOn(database.url, { databaseResilience: resilience })
    tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))
    sessionId = ((await created.json()) as { id: string }).id
  })
  afterAll(async () => {
    await server?.close()
    await database?.drop()
  })

  test("past the retry budget: 503 with Retry-After, never 500; the wait is cancelled on the server; the next request after release succeeds", async () => {
    const fault = faultMatrix(server, "postgres-locked", { broken: "the `sessions` table", how: "another session holds `LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE` past the retry budget; `POST .../messages`, `GET /v1/sessions`", dependency: "database" })
    const lock = await holdLock(database.url, "sessions")
    try {
      const problem = await expectProblem(await post(server, tenant.api_key, sessionId, "blocked"), 503, "DATABASE_UNAVAILABLE")
      expect(problem.retry_after_seconds).toBeGreaterThanOrEqual(1)
      await fault.saw(problem)
      await fault.saw(await expectProblem(await server.fetch("/v1/sessions", withKey(tenant.api_key)), 503, "DATABASE_UNAVAILABLE"))
      // The timed-out statements were cancelled: none of Bulwark's connections still waits on the lock.
      await eventually(async () => ((await bulwarkLockWaits(databaseNameOf(database.url))) === 0 ? true : undefined))
      const row = await ledgerRecord(server, problem.error_id)
      expect(row).toMatchObject({ type: "database", code: "DATABASE_UNAVAILABLE", status: 503, severity: "error", route: "/v1/sessions/:id/messages" })
      expect(row.message).toContain("(timeout)")
    } finally {
      await lock.release()
      fault.healed()
    }
    expect(await untilPosted(server, tenant.api_key, sessionId)).toBe(201)
    await fault.recovered()
    // The post refused under the lock wrote nothing: the one message is the one posted after.
    const listed = await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(tenant.api_key))
    expect(((await listed.json()) as { data: Array<{ seq: number; content: string }> }).data.map((m) => [m.seq, m.content])).toEqual([[1, "after the lock"]])
  })

  test("a client that leaves while its write waits on the lock is a client abort, never a 500", async () => {
    const lock = await holdLock(database.url, "sessions")
    try {
      const controller = new AbortController()
      const pending = server.fetch(
        `/v1/sessions/${sessionId}/messages`,
        withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "left" }), signal: controller.signal })
      ).then(() => "answered", (error: unknown) => (error instanceof Error ? error.name : String(error)))
      await eventually(async () => ((await bulwarkLockWaits(databaseNameOf(database.url))) > 0 ? true : undefined))
      controller.abort()
      expect(await pending).toBe("AbortError")
      // Its work is interrupted: the statement no longer waits on the lock.
      await eventually(async () => ((await bulwarkLockWaits(databaseNameOf(database.url))) === 0 ? true : undefined))
    } finally {
      await lock.release()
    }
    // A later error's row is stored, so the ledger has written whatever the abort left.
    const marker = await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
    await ledgerRecord(server, marker.error_id)
    const internal = await server.admin("/v1/admin/errors?code=INTERNAL_ERROR")
    expect(((await internal.json()) as { data: Array<{ message: string }> }).data.map((row) => row.message)).toEqual([])
  })
})

describe.skipIf(!available)("PostgreSQL's statement timeout", () => {
  let database: TestDatabase
  let server: TestServer
  let tenant: { id: string; api_key: string }
  let sessionId: string

  beforeAll(async () => {
    database = await cloneDatabase()
    // Set before Bulwark connects, so every connection of its pool has it; far below Bulwark's own call timeout.
    await withConnection(POSTGRES_ADMIN_URL, (sql) => sql.unsafe(`ALTER DATABASE "${databaseNameOf(database.url)}" SET statement_timeout = '150ms'`))
    server = await startServerOn(database.url)
    tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))
    sessionId = ((await created.json()) as { id: string }).id
  })
  afterAll(async () => {
    await server?.close()
    await database?.drop()
  })

  test("57014 becomes the call's timeout: 503 DATABASE_UNAVAILABLE with Retry-After, ledgered with its cause", async () => {
    const fault = faultMatrix(server, "postgres-statement-timeout", { broken: "statements past PostgreSQL's `statement_timeout`", how: "`statement_timeout = 150ms` on the database while another session locks `sessions`; `POST .../messages`", dependency: "database" })
    const lock = await holdLock(database.url, "sessions")
    let errorId: string
    try {
      const problem = await expectProblem(await post(server, tenant.api_key, sessionId, "blocked"), 503, "DATABASE_UNAVAILABLE")
      expect(problem.retry_after_seconds).toBeGreaterThanOrEqual(1)
      await fault.saw(problem)
      errorId = problem.error_id
    } finally {
      await lock.release()
      fault.healed()
    }
    const row = await ledgerRecord(server, errorId)
    expect(row).toMatchObject({ type: "database", code: "DATABASE_UNAVAILABLE", status: 503, severity: "error", route: "/v1/sessions/:id/messages" })
    // PostgreSQL ended each attempt (150 ms), not Bulwark's own call timeout (2 s), and the row says so.
    expect(row.message).toContain("(timeout)")
    expect(row.message).toContain("57014")
    expect(await untilPosted(server, tenant.api_key, sessionId)).toBe(201)
    await fault.recovered()
  })
})
