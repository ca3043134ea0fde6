/** Session memory through HTTP: the key/value contract, its error rows, and a memory store that fails. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultResilience } from "../../layers/database/Database.js"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"
import { faultMatrix } from "../support/faultMatrix.js"

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer({
    memoryResilience: { ...defaultResilience, breaker: { ...defaultResilience.breaker, openDuration: "300 millis" } }
  })
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

interface Entry {
  key: string
  value: unknown
  expires_at: string | null
  updated_at: string
}

const newSession = async () =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const memory = (sessionId: string, name = "") => `/v1/sessions/${sessionId}/memory${name === "" ? "" : `/${name}`}`
const put = (sessionId: string, name: string, body: unknown) =>
  server.fetch(memory(sessionId, name), withKey(key, { method: "PUT", body: JSON.stringify(body) }))
const get = (sessionId: string, name: string) => server.fetch(memory(sessionId, name), withKey(key))

describe("put, get, list, delete", () => {
  test("any JSON value round-trips; a put replaces; the list is by key; a delete removes", async () => {
    const sessionId = await newSession()
    const values: Record<string, unknown> = {
      "plan.v2": { steps: ["a", "b"], done: false },
      "count": 3,
      "note:latest": "text",
      "nothing": null,
      "list_of-things": [1, { two: 2 }]
    }
    for (const [name, value] of Object.entries(values)) {
      const response = await put(sessionId, name, { value })
      expect(response.status).toBe(200)
      const entry = (await response.json()) as Entry
      expect(entry).toMatchObject({ key: name, value, expires_at: null })
      expect(new Date(entry.updated_at).toISOString()).toBe(entry.updated_at)
    }
    for (const [name, value] of Object.entries(values)) expect(((await (await get(sessionId, name)).json()) as Entry).value).toEqual(value)

    expect((await put(sessionId, "count", { value: 4 })).status).toBe(200)
    expect(((await (await get(sessionId, "count")).json()) as Entry).value).toBe(4)

    const listed = (await (await server.fetch(memory(sessionId), withKey(key))).json()) as { data: Array<Entry> }
    expect(listed.data.map((entry) => entry.key)).toEqual(Object.keys(values).sort())

    const deleted = await server.fetch(memory(sessionId, "count"), withKey(key, { method: "DELETE" }))
    expect(deleted.status).toBe(204)
    await expectProblem(await get(sessionId, "count"), 404, "MEMORY_KEY_NOT_FOUND")
    await expectProblem(await server.fetch(memory(sessionId, "count"), withKey(key, { method: "DELETE" })), 404, "MEMORY_KEY_NOT_FOUND")
  })

  test("ttl_seconds sets expires_at from the write time", async () => {
    const sessionId = await newSession()
    const entry = (await (await put(sessionId, "short", { value: 1, ttl_seconds: 90 })).json()) as Entry
    expect(Date.parse(entry.expires_at!) - Date.parse(entry.updated_at)).toBe(90_000)
    // A put without a TTL makes the key permanent again.
    expect(((await (await put(sessionId, "short", { value: 2 })).json()) as Entry).expires_at).toBeNull()
  })

  test("another tenant's session is 404 SESSION_NOT_FOUND, and its keys are untouched", async () => {
    const sessionId = await newSession()
    await put(sessionId, "mine", { value: "secret plan" })
    const other = (await server.createTenant()).api_key
    const asOther = (init: RequestInit = {}) => withKey(other, init)
    await expectProblem(await server.fetch(memory(sessionId, "mine"), asOther()), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(memory(sessionId), asOther()), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(memory(sessionId, "mine"), asOther({ method: "PUT", body: '{"value":0}' })), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(memory(sessionId, "mine"), asOther({ method: "DELETE" })), 404, "SESSION_NOT_FOUND")
    expect(((await (await get(sessionId, "mine")).json()) as Entry).value).toBe("secret plan")
  })
})

describe("every error row", () => {
  test("key syntax: 400 with a pointer to /key", async () => {
    const sessionId = await newSession()
    for (const bad of ["has%20space", "x".repeat(129), "%C3%A9t%C3%A9", "star*", "q%3Fmark", "semi%3Bcolon"]) {
      const problem = await expectProblem(await put(sessionId, bad, { value: 1 }), 400, "VALIDATION_FAILED")
      expect(problem.errors?.map((issue) => issue.pointer)).toEqual(["/key"])
    }
    expect((await put(sessionId, "x".repeat(128), { value: 1 })).status).toBe(200)
    // A raw `;` would end the path for the router (key "semi"): refused instead of misread.
    await expectProblem(await put(sessionId, "semi;colon", { value: 1 }), 400, "VALIDATION_FAILED")
    await expectProblem(await get(sessionId, "semi"), 404, "MEMORY_KEY_NOT_FOUND")
  })

  test("a value over 64 KiB is 413 with a pointer to /value; a missing value or a bad TTL is 400", async () => {
    const sessionId = await newSession()
    const problem = await expectProblem(await put(sessionId, "big", { value: "x".repeat(64 * 1024) }), 413, "PAYLOAD_TOO_LARGE")
    expect(problem.errors?.[0]?.pointer).toBe("/value")
    // Exactly 64 KiB of JSON is accepted: the quotes count.
    expect((await put(sessionId, "big", { value: "x".repeat(64 * 1024 - 2) })).status).toBe(200)
    const missing = await expectProblem(await put(sessionId, "k", { ttl_seconds: 5 }), 400, "VALIDATION_FAILED")
    expect(missing.errors?.map((issue) => issue.pointer)).toEqual(["/value"])
    for (const ttl of [0, -1, 1.5, "10"]) {
      const bad = await expectProblem(await put(sessionId, "k", { value: 1, ttl_seconds: ttl }), 400, "VALIDATION_FAILED")
      expect(bad.errors?.map((issue) => issue.pointer)).toEqual(["/ttl_seconds"])
    }
  })

  test("a session that does not exist is 404 SESSION_NOT_FOUND, never MEMORY_KEY_NOT_FOUND", async () => {
    const missing = crypto.randomUUID()
    await expectProblem(await put(missing, "k", { value: 1 }), 404, "SESSION_NOT_FOUND")
    await expectProblem(await get(missing, "k"), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(memory(missing), withKey(key)), 404, "SESSION_NOT_FOUND")
  })
})

sqliteOnly("renames a table through a second SQLite connection")("a memory store that cannot serve: 503 MEMORY_UNAVAILABLE, ledgered, its own breaker opens; sessions still serve", async () => {
  const sessionId = await newSession()
  expect((await put(sessionId, "k", { value: 1 })).status).toBe(200)
  const other = new Database(server.databaseFile)
  const fault = faultMatrix(server, "memory-table-gone", { broken: "the memory store", how: "another connection renames the `memory` table away; `GET`/`PUT .../memory/{key}` until its breaker opens", dependency: "memory" })
  try {
    other.run("ALTER TABLE memory RENAME TO memory_away")
    const first = await expectProblem(await get(sessionId, "k"), 503, "MEMORY_UNAVAILABLE")
    await fault.saw(first)
    const record = await ledgerRecord(server, first.error_id)
    expect(record).toMatchObject({ type: "memory", code: "MEMORY_UNAVAILABLE", status: 503, severity: "error", session_id: sessionId })
    // Five failures in a row open the memory breaker: the next call is refused at once.
    for (let i = 0; i < 4; i++) await expectProblem(await put(sessionId, "k", { value: 2 }), 503, "MEMORY_UNAVAILABLE")
    const rejected = await expectProblem(await get(sessionId, "k"), 503, "MEMORY_UNAVAILABLE")
    expect(rejected.retry_after_seconds).toBe(1)
    // Refused by the breaker without a call to the store (its row says so; "at once" is the breaker's own TestClock test), not timed here.
    expect((await ledgerRecord(server, rejected.error_id)).message).toContain("breaker_open")

    // The rest of the API serves; /health is degraded (200) and names the memory store.
    expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key))).status).toBe(200)
    const health = (await (await server.admin("/health")).json()) as {
      status: string
      dependencies: Record<string, { status: string; breaker: string }>
    }
    expect(health.status).toBe("degraded")
    expect(health.dependencies.memory).toMatchObject({ status: "down", breaker: "open" })
    expect(health.dependencies.database).toMatchObject({ status: "ok", breaker: "closed" })
    expect(await (await server.admin("/metrics")).text()).toMatch(/^bulwark_dependency_up\{dependency="memory"\} 0$/m)
  } finally {
    other.run("ALTER TABLE memory_away RENAME TO memory")
    other.close()
    fault.healed()
  }
  // After the open time a probe goes through and closes the breaker.
  const entry = await eventually(async () => {
    const response = await get(sessionId, "k")
    if (response.status !== 200) {
      await response.body?.cancel()
      return undefined
    }
    return (await response.json()) as Entry
  })
  await fault.recovered()
  expect(entry.value).toBe(1)
})
