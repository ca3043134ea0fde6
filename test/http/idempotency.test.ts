/** Idempotency-Key on POST (SPEC §4): replay, reuse with another body, races, failures not stored. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let tenant: { id: string; api_key: string }

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
})
afterAll(() => server.close())

const post = (key: string | undefined, body: object, apiKey = tenant.api_key) =>
  server.fetch("/v1/sessions", withKey(apiKey, {
    method: "POST",
    headers: key === undefined ? {} : { "idempotency-key": key },
    body: JSON.stringify(body)
  }))

const sessionCount = async (apiKey = tenant.api_key) =>
  ((await (await server.fetch("/v1/sessions?limit=200", withKey(apiKey))).json()) as { data: Array<unknown> }).data.length

describe("Idempotency-Key", () => {
  test("a repeat with the same key and body returns the first response and writes nothing", async () => {
    const owner = await server.createTenant()
    const key = crypto.randomUUID()
    const first = await post(key, { title: "once", metadata: { a: 1, b: 2 } }, owner.api_key)
    expect(first.status).toBe(201)
    const firstBody = await first.json()
    // The same body with its keys in another order is the same request.
    const again = await post(key, { metadata: { b: 2, a: 1 }, title: "once" }, owner.api_key)
    expect(again.status).toBe(201)
    expect(await again.json()).toEqual(firstBody)
    expect(await sessionCount(owner.api_key)).toBe(1)
  })

  test("the same key with a different body is 409 IDEMPOTENCY_KEY_REUSED", async () => {
    const key = crypto.randomUUID()
    expect((await post(key, { title: "a" })).status).toBe(201)
    const problem = await expectProblem(await post(key, { title: "b" }), 409, "IDEMPOTENCY_KEY_REUSED")
    expect((await ledgerRecord(server, problem.error_id)).code).toBe("IDEMPOTENCY_KEY_REUSED")
  })

  test("20 concurrent repeats create one session and all answer with it", async () => {
    const owner = await server.createTenant()
    const key = crypto.randomUUID()
    const responses = await Promise.all(Array.from({ length: 20 }, () => post(key, { title: "raced" }, owner.api_key)))
    const bodies = await Promise.all(responses.map(async (response) => ({ status: response.status, body: (await response.json()) as { id: string } })))
    expect(bodies.every((entry) => entry.status === 201)).toBe(true)
    expect(new Set(bodies.map((entry) => entry.body.id)).size).toBe(1)
    expect(await sessionCount(owner.api_key)).toBe(1)
  })

  test("keys are per tenant", async () => {
    const other = await server.createTenant()
    const key = crypto.randomUUID()
    expect((await post(key, { title: "mine" })).status).toBe(201)
    const theirs = await post(key, { title: "theirs" }, other.api_key)
    expect(theirs.status).toBe(201)
    expect(((await theirs.json()) as { title: string }).title).toBe("theirs")
  })

  test("a request that failed is not stored: the key can be used again", async () => {
    const id = crypto.randomUUID()
    expect((await post(undefined, { id })).status).toBe(201)
    const key = crypto.randomUUID()
    await expectProblem(await post(key, { id }), 409, "SESSION_ALREADY_EXISTS")
    expect((await post(key, { title: "second try" })).status).toBe(201)
  })

  test("an empty or oversized key is a 400", async () => {
    await expectProblem(await post("", { title: "x" }), 400, "VALIDATION_FAILED")
    await expectProblem(await post("k".repeat(256), { title: "x" }), 400, "VALIDATION_FAILED")
  })
})
