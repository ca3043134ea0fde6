/** Error groups (SPEC §6) through HTTP: counts, first/last seen, trend, filters, resolving, reopening. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

interface Group {
  fingerprint: string
  code: string
  status: number
  type: string
  route: string | null
  severity: string
  count: number
  first_seen: string
  last_seen: string
  last_error_id: string
  unresolved_count: number
  trend: Array<number>
}

/** Ledger rows are written off the request path; on a busy machine a batch can take seconds. */
const LEDGER_AFTER_A_WRITE_MILLIS = 10_000

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer()
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

const groups = async (query = ""): Promise<Array<Group>> => {
  const response = await server.admin(`/v1/admin/errors/groups${query}`)
  if (response.status !== 200) throw new Error(`groups answered ${response.status}: ${await response.text()}`)
  return ((await response.json()) as { data: Array<Group> }).data
}

/** A 404 SESSION_NOT_FOUND on the session route; its error_id. */
const missingSession = async (): Promise<string> => {
  const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(key))
  return (await expectProblem(response, 404, "SESSION_NOT_FOUND")).error_id
}

const groupOf = (code: string, query = "") => async () => (await groups(query)).find((group) => group.code === code)

describe("GET /v1/admin/errors/groups", () => {
  let notFoundIds: Array<string> = []
  let group: Group

  beforeAll(async () => {
    notFoundIds = [await missingSession(), await missingSession(), await missingSession()]
    const invalid = await server.fetch("/v1/sessions?limit=0", withKey(key))
    await expectProblem(invalid, 400, "VALIDATION_FAILED")
    await ledgerRecord(server, notFoundIds[2]!)
    group = await eventually(async () => {
      const found = await groupOf("SESSION_NOT_FOUND")()
      return found !== undefined && found.count === 3 && (await groupOf("VALIDATION_FAILED")()) !== undefined ? found : undefined
    })
  })

  test("groups the errors of one fingerprint with their counts, first and last seen, and the newest error", async () => {
    const newest = await ledgerRecord(server, notFoundIds[2]!)
    const oldest = await ledgerRecord(server, notFoundIds[0]!)
    expect(group).toMatchObject({
      fingerprint: newest.fingerprint,
      code: "SESSION_NOT_FOUND",
      status: 404,
      type: "http",
      route: "/v1/sessions/:id",
      severity: "warning",
      count: 3,
      unresolved_count: 3,
      last_error_id: notFoundIds[2],
      first_seen: oldest.occurred_at,
      last_seen: newest.occurred_at
    })
  })

  test("carries a 24-hour trend whose current hour holds today's errors", () => {
    expect(group.trend).toHaveLength(24)
    // The last two hours, should the test straddle the turn of an hour.
    expect(group.trend.at(-1)! + group.trend.at(-2)!).toBe(3)
    expect(group.trend.reduce((a, b) => a + b, 0)).toBe(3)
  })

  test("lists the busiest group first", async () => {
    const all = await groups()
    const counts = all.map((g) => g.count)
    expect(counts).toEqual([...counts].sort((a, b) => b - a))
    expect(all[0]?.count).toBeGreaterThanOrEqual(3)
  })

  test("filters by code, type, severity and route, and honours limit", async () => {
    expect((await groups("?code=VALIDATION_FAILED")).map((g) => g.code)).toEqual(["VALIDATION_FAILED"])
    expect((await groups("?type=validation")).every((g) => g.type === "validation")).toBe(true)
    expect((await groups("?severity=critical"))).toEqual([])
    expect((await groups(`?route=${encodeURIComponent("/v1/sessions/:id")}`)).map((g) => g.code)).toEqual(["SESSION_NOT_FOUND"])
    expect(await groups("?limit=1")).toHaveLength(1)
  })

  test("since counts only the errors from then on", async () => {
    expect(await groups(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).toEqual([])
  })

  test("refuses unknown parameters and malformed values with their pointers", async () => {
    for (const [query, pointer] of [["?limit=0", "/limit"], ["?resolved=maybe", "/resolved"], ["?since=yesterday", "/since"], ["?colour=red", "/colour"]]) {
      const problem = await expectProblem(await server.admin(`/v1/admin/errors/groups${query}`), 400, "VALIDATION_FAILED")
      expect(problem.errors?.map((issue) => issue.pointer)).toContain(pointer!)
    }
  })

  test("is for operators only", async () => {
    await expectProblem(await server.fetch("/v1/admin/errors/groups"), 401, "AUTH_MISSING")
    await expectProblem(await server.fetch("/v1/admin/errors/groups", withKey(key)), 403, "FORBIDDEN")
  })

  test("is in the OpenAPI document with its parameters and the resolve route", async () => {
    const spec = (await (await server.fetch("/openapi.json")).json()) as { paths: Record<string, any> }
    const list = spec.paths["/v1/admin/errors/groups"]?.get
    expect(list.parameters.map((p: { name: string }) => p.name).sort()).toEqual(["code", "limit", "resolved", "route", "severity", "since", "type"])
    expect(Object.keys(list.responses)).toEqual(expect.arrayContaining(["200", "401", "403", "503"]))
    expect(spec.paths["/v1/admin/errors/groups/{fingerprint}/resolve"]?.post.responses["404"]).toBeDefined()
  })
})

describe("resolving a group", () => {
  test("resolves every error of the group with the notes, and a new error of its fingerprint reopens it", { timeout: 30_000 }, async () => {
    const before = [await missingSession(), await missingSession()]
    await ledgerRecord(server, before[1]!)
    const { fingerprint } = await ledgerRecord(server, before[0]!)
    const open = await eventually(async () => {
      const found = (await groups("?resolved=false")).find((g) => g.fingerprint === fingerprint)
      return found !== undefined && found.unresolved_count >= 2 ? found : undefined
    }, LEDGER_AFTER_A_WRITE_MILLIS)

    const response = await server.admin(`/v1/admin/errors/groups/${fingerprint}/resolve`, {
      method: "POST",
      body: JSON.stringify({ notes: "clients poll deleted sessions; documented" })
    })
    expect(response.status).toBe(200)
    const resolved = (await response.json()) as Group
    expect(resolved).toMatchObject({ fingerprint, unresolved_count: 0, count: open.count })
    for (const errorId of before) {
      const record = await ledgerRecord(server, errorId)
      expect(record.resolved).toBe(true)
      expect(record.notes).toBe("clients poll deleted sessions; documented")
      expect(record.resolved_at).not.toBeNull()
    }
    expect((await groups("?resolved=false")).some((g) => g.fingerprint === fingerprint)).toBe(false)
    expect((await groups("?resolved=true")).some((g) => g.fingerprint === fingerprint)).toBe(true)

    const later = await missingSession()
    const reopened = await eventually(async () => {
      const found = (await groups("?resolved=false")).find((g) => g.fingerprint === fingerprint)
      return found !== undefined && found.unresolved_count === 1 ? found : undefined
    }, LEDGER_AFTER_A_WRITE_MILLIS)
    expect(reopened).toMatchObject({ count: open.count + 1, last_error_id: later })
    expect((await ledgerRecord(server, later)).resolved).toBe(false)
  })

  test("an unknown fingerprint is 404 ERROR_NOT_FOUND and a malformed one 400", async () => {
    const unknown = await server.admin("/v1/admin/errors/groups/00000000deadbeef/resolve", { method: "POST", body: "{}" })
    await expectProblem(unknown, 404, "ERROR_NOT_FOUND")
    const malformed = await server.admin("/v1/admin/errors/groups/NOT-HEX/resolve", { method: "POST", body: "{}" })
    const problem = await expectProblem(malformed, 400, "VALIDATION_FAILED")
    expect(problem.errors?.[0]?.pointer).toBe("/fingerprint")
  })
})
