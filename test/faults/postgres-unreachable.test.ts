/**
 * PostgreSQL goes away under a running Bulwark: every connection cut and new ones refused (a proxy the
 * test controls), a server that accepts and never answers (the same proxy, stalled), and the server
 * itself shut down and started again (a private cluster). Each time clients get 503
 * `DATABASE_UNAVAILABLE` with `Retry-After`, never a 500 or a 404, `/health/ready` says 503, and the
 * server heals by itself once PostgreSQL is back, with no restart; the failures reach the ledger once
 * it can be written again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultResilience, type DatabaseResilience } from "../../layers/database/Database.js"
import { type OwnPostgres, requirePostgresServer, startOwnPostgres } from "../support/ownPostgres.js"
import { metricValue, requireSharedPostgres, startServerOn, viaProxy } from "../support/pgFaults.js"
import { cloneDatabase, type TestDatabase } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, type TestServer, withKey } from "../support/server.js"
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js"
import { faultMatrix } from "../support/faultMatrix.js"

const sharedAvailable = await requireSharedPostgres("the PostgreSQL unreachable fault tests")
const clusterAvailable = requirePostgresServer("the PostgreSQL shutdown fault test")

/** Short open times and call timeouts, so that healing is seen in well under a second. */
const resilience: DatabaseResilience = {
  ...defaultResilience,
  breaker: { ...defaultResilience.breaker, openDuration: "200 millis", maxOpenDuration: "400 millis", callTimeout: "400 millis" }
}

interface Caller {
  readonly server: TestServer
  readonly tenant: { readonly id: string; readonly api_key: string }
  readonly sessionId: string
}

const seed = async (server: TestServer): Promise<Caller> => {
  const tenant = await server.createTenant()
  const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "before" }) }))
  expect(created.status).toBe(201)
  return { server, tenant, sessionId: ((await created.json()) as { id: string }).id }
}

/** Reads and writes that each need the database (a list is never served from a cache). */
const expectUnavailable = async ({ server, tenant, sessionId }: Caller) => {
  const listed = await expectProblem(await server.fetch("/v1/sessions", withKey(tenant.api_key)), 503, "DATABASE_UNAVAILABLE")
  expect(listed.retry_after_seconds).toBeGreaterThanOrEqual(1)
  const posted = await expectProblem(
    await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "lost?" }) })),
    503,
    "DATABASE_UNAVAILABLE"
  )
  await expectProblem(await server.fetch("/health/ready"), 503, "DATABASE_UNAVAILABLE")
  return { listed, posted }
}

/** Polls until a database read succeeds again; the server is the same process throughout. */
const expectHealed = async ({ server, tenant, sessionId }: Caller) => {
  await eventually(async () => {
    const response = await server.fetch("/v1/sessions", withKey(tenant.api_key))
    await response.body?.cancel()
    return response.status === 200 ? true : undefined
  }, 5000)
  expect((await server.fetch("/health/ready")).status).toBe(200)
  const posted = await server.fetch(
    `/v1/sessions/${sessionId}/messages`,
    withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "after" }) })
  )
  expect(posted.status).toBe(201)
  const listed = await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(tenant.api_key))
  // The post refused while the database was away left nothing behind: the one message is the last one.
  expect(((await listed.json()) as { data: Array<{ content: string; seq: number }> }).data.map((m) => [m.seq, m.content])).toEqual([[1, "after"]])
}

/** The ledger row of a 503 written once the database is back (the ledger waits for it, SPEC §6). */
const expectLedgered = async (server: TestServer, errorId: string, route: string) => {
  const row = await ledgerRecord(server, errorId).catch(() => undefined)
  expect(row).toMatchObject({ error_id: errorId, type: "database", code: "DATABASE_UNAVAILABLE", status: 503, severity: "error", route })
}

describe.skipIf(!sharedAvailable)("PostgreSQL unreachable behind a proxy", () => {
  let database: TestDatabase
  let proxy: TcpProxy
  let caller: Caller

  beforeAll(async () => {
    database = await cloneDatabase()
    const direct = new URL(database.url)
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) })
    caller = await seed(await startServerOn(viaProxy(database.url, proxy), { databaseResilience: resilience }))
  }, 30_000)
  afterAll(async () => {
    await caller?.server.close()
    await proxy?.close()
    await database?.drop()
  }, 30_000)

  test("every connection cut and new ones refused: 503 with Retry-After, not ready; healed without a restart", async () => {
    const server = caller.server
    const openedBefore = await metricValue(server, `bulwark_breaker_transitions_total{dependency="database",from="closed",to="open"}`)
    const fault = faultMatrix(server, "postgres-cut", { broken: "PostgreSQL's network", how: "a TCP proxy resets every connection and refuses new ones; `GET /v1/sessions`, `POST .../messages`", dependency: "database" })
    await proxy.cut()
    const { listed, posted } = await expectUnavailable(caller)
    await fault.saw(listed)
    await fault.saw(posted)
    // Enough failures in a row open the breaker: then the answer comes at once, still honest.
    await eventually(async () => {
      await expectProblem(await server.fetch("/v1/sessions", withKey(caller.tenant.api_key)), 503, "DATABASE_UNAVAILABLE")
      const opened = await metricValue(server, `bulwark_breaker_transitions_total{dependency="database",from="closed",to="open"}`)
      return opened > openedBefore ? true : undefined
    })
    expect(await metricValue(server, `bulwark_dependency_up{dependency="database"}`)).toBe(0)
    await proxy.heal()
    fault.healed()
    await expectHealed(caller)
    await fault.recovered()
    expect(await metricValue(server, `bulwark_breaker_state{dependency="database"}`)).toBe(0)
    await expectLedgered(server, listed.error_id, "/v1/sessions")
    await expectLedgered(server, posted.error_id, "/v1/sessions/:id/messages")
  }, 30_000)

  test("a PostgreSQL that accepts and never answers: each call is cut by its timeout, 503, and healed", async () => {
    const fault = faultMatrix(caller.server, "postgres-stalled", { broken: "PostgreSQL's replies", how: "the TCP proxy accepts and forwards nothing; `GET /v1/sessions`", dependency: "database" })
    await proxy.stall()
    const started = performance.now()
    const problem = await expectProblem(await caller.server.fetch("/v1/sessions", withKey(caller.tenant.api_key)), 503, "DATABASE_UNAVAILABLE")
    // Bounded by the call timeout and the retry policy, not by the 10 s request deadline.
    expect(performance.now() - started).toBeLessThan(5000)
    expect(problem.retry_after_seconds).toBeGreaterThanOrEqual(1)
    await fault.saw(problem)
    await proxy.heal()
    fault.healed()
    await eventually(async () => {
      const response = await caller.server.fetch("/v1/sessions", withKey(caller.tenant.api_key))
      await response.body?.cancel()
      return response.status === 200 ? true : undefined
    }, 5000)
    await fault.recovered()
    expect((await caller.server.fetch("/health/ready")).status).toBe(200)
    await expectLedgered(caller.server, problem.error_id, "/v1/sessions")
  }, 30_000)
})

describe.skipIf(!clusterAvailable)("PostgreSQL shut down and started again", () => {
  let postgres: OwnPostgres
  let caller: Caller

  beforeAll(async () => {
    postgres = await startOwnPostgres()
    const database = await postgres.createDatabase()
    caller = await seed(await startServerOn(postgres.url(database), { databaseResilience: resilience }))
  }, 60_000)
  afterAll(async () => {
    await caller?.server.close()
    await postgres?.close()
  }, 30_000)

  test("a fast shutdown ends every session (57P01), then connections are refused: 503; the server heals when PostgreSQL starts", async () => {
    const fault = faultMatrix(caller.server, "postgres-stopped", { broken: "PostgreSQL", how: "`pg_ctl stop -m fast` of a private cluster (57P01, then refused), then started again", dependency: "database" })
    await postgres.stop("fast")
    const { listed, posted } = await expectUnavailable(caller)
    await fault.saw(listed)
    await fault.saw(posted)
    await postgres.start()
    fault.healed()
    await expectHealed(caller)
    await fault.recovered()
    await expectLedgered(caller.server, listed.error_id, "/v1/sessions")
    await expectLedgered(caller.server, posted.error_id, "/v1/sessions/:id/messages")
  }, 30_000)

  test("a crash (immediate stop, no checkpoint) is the same to clients: 503, then healed", async () => {
    const fault = faultMatrix(caller.server, "postgres-crashed", { broken: "PostgreSQL", how: "`pg_ctl stop -m immediate` of a private cluster (a crash), then started again; `GET /v1/sessions`", dependency: "database" })
    await postgres.stop("immediate")
    const problem = await expectProblem(await caller.server.fetch("/v1/sessions", withKey(caller.tenant.api_key)), 503, "DATABASE_UNAVAILABLE")
    await fault.saw(problem)
    await postgres.start()
    fault.healed()
    await eventually(async () => {
      const response = await caller.server.fetch("/v1/sessions", withKey(caller.tenant.api_key))
      await response.body?.cancel()
      return response.status === 200 ? true : undefined
    }, 5000)
    await fault.recovered()
    await expectLedgered(caller.server, problem.error_id, "/v1/sessions")
  }, 30_000)
})
