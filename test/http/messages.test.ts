/** Messages through HTTP: ordering under concurrency, paging, agent permission, limits, cascade. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer()
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

interface MessageBody {
  id: string
  session_id: string
  seq: number
  agent_id: string
  content: string
  metadata: Record<string, unknown>
  created_at: string
}

const newSession = async (apiKey = key) =>
  ((await (await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const post = (sessionId: string, body: object, apiKey = key, headers: Record<string, string> = {}) =>
  server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(apiKey, { method: "POST", body: JSON.stringify(body), headers }))

const list = async (sessionId: string, query = "") => {
  const response = await server.fetch(`/v1/sessions/${sessionId}/messages${query}`, withKey(key))
  expect(response.status).toBe(200)
  return (await response.json()) as { data: Array<MessageBody>; next_after: number | null }
}

describe("posting and reading", () => {
  test("a message comes back as posted, with seq 1, and reads back in order", async () => {
    const sessionId = await newSession()
    const response = await post(sessionId, { agent_id: "planner", content: "first", metadata: { step: 1 } })
    expect(response.status).toBe(201)
    const message = (await response.json()) as MessageBody
    expect(message).toMatchObject({ session_id: sessionId, seq: 1, agent_id: "planner", content: "first", metadata: { step: 1 } })
    expect(message.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(new Date(message.created_at).toISOString()).toBe(message.created_at)
    const second = (await (await post(sessionId, { agent_id: "critic", content: "second" })).json()) as MessageBody
    expect(second).toMatchObject({ seq: 2, metadata: {} })
    expect((await list(sessionId)).data).toEqual([message, second])
  })

  test("50 concurrent posters get seq 1..50 exactly once each, and the list is in seq order", async () => {
    const sessionId = await newSession()
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post(sessionId, { agent_id: `agent-${i % 5}`, content: `message ${i}` }))
    )
    expect(responses.map((response) => response.status)).toEqual(Array(50).fill(201))
    const posted = (await Promise.all(responses.map((response) => response.json()))) as Array<MessageBody>
    expect(posted.map((message) => message.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    const stored = (await list(sessionId, "?limit=200")).data
    expect(stored.map((message) => message.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    // Each stored message is the one its poster was told about.
    const bySeq = new Map(posted.map((message) => [message.seq, message]))
    for (const message of stored) expect(message).toEqual(bySeq.get(message.seq)!)
  })

  test("pages by after and next_after without gaps or repeats", async () => {
    const sessionId = await newSession()
    for (let i = 1; i <= 7; i++) expect((await post(sessionId, { agent_id: "a", content: `m${i}` })).status).toBe(201)
    const seen: Array<number> = []
    let after: number | null = 0
    let pages = 0
    while (after !== null) {
      const page = await list(sessionId, `?limit=3&after=${after}`)
      seen.push(...page.data.map((message) => message.seq))
      after = page.next_after
      pages++
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(pages).toBe(3)
    expect((await list(sessionId, "?after=7")).data).toEqual([])
    expect((await list(sessionId, "?after=5")).data.map((message) => message.content)).toEqual(["m6", "m7"])
  })

  test("Idempotency-Key: a repeat returns the first message and stores nothing new", async () => {
    const sessionId = await newSession()
    const headers = { "idempotency-key": crypto.randomUUID() }
    const first = (await (await post(sessionId, { agent_id: "a", content: "once" }, key, headers)).json()) as MessageBody
    const again = await post(sessionId, { agent_id: "a", content: "once" }, key, headers)
    expect(again.status).toBe(201)
    expect(await again.json()).toEqual(first)
    expect((await list(sessionId)).data.length).toBe(1)
    await expectProblem(await post(sessionId, { agent_id: "a", content: "different" }, key, headers), 409, "IDEMPOTENCY_KEY_REUSED")
  })
})

describe("every error row", () => {
  test("an agent the key does not allow is 403 FORBIDDEN and nothing is stored; an allowed one posts", async () => {
    const tenant = await server.createTenant()
    const keyResponse = await server.admin(`/v1/admin/tenants/${tenant.id}/keys`, {
      method: "POST",
      body: JSON.stringify({ allowed_agents: ["planner"] })
    })
    const limited = ((await keyResponse.json()) as { api_key: string }).api_key
    const sessionId = await newSession(limited)
    await expectProblem(await post(sessionId, { agent_id: "critic", content: "x" }, limited), 403, "FORBIDDEN")
    expect((await post(sessionId, { agent_id: "planner", content: "x" }, limited)).status).toBe(201)
    const stored = (await (await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(limited))).json()) as { data: Array<MessageBody> }
    expect(stored.data.map((message) => message.agent_id)).toEqual(["planner"])
  })

  test("content over 64 KiB is 413 with a pointer to /content; exactly 64 KiB is accepted", async () => {
    const sessionId = await newSession()
    const problem = await expectProblem(await post(sessionId, { agent_id: "a", content: "x".repeat(64 * 1024 + 1) }), 413, "PAYLOAD_TOO_LARGE")
    expect(problem.errors?.[0]?.pointer).toBe("/content")
    // Bytes, not characters: 21846 three-byte characters are 65538 bytes.
    await expectProblem(await post(sessionId, { agent_id: "a", content: "€".repeat(21846) }), 413, "PAYLOAD_TOO_LARGE")
    expect((await post(sessionId, { agent_id: "a", content: "x".repeat(64 * 1024) })).status).toBe(201)
  })

  test("malformed bodies and parameters are 400 with pointers", async () => {
    const sessionId = await newSession()
    const missing = await expectProblem(await post(sessionId, { content: "no agent" }), 400, "VALIDATION_FAILED")
    expect(missing.errors?.map((issue) => issue.pointer)).toContain("/agent_id")
    const empty = await expectProblem(await post(sessionId, { agent_id: "", content: "x" }), 400, "VALIDATION_FAILED")
    expect(empty.errors?.map((issue) => issue.pointer)).toContain("/agent_id")
    await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/messages?after=-1`, withKey(key)), 400, "VALIDATION_FAILED")
    await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/messages?limit=201`, withKey(key)), 400, "VALIDATION_FAILED")
    await expectProblem(await server.fetch("/v1/sessions/not-a-uuid/messages", withKey(key)), 400, "VALIDATION_FAILED")
  })

  test("a session that does not exist is 404 SESSION_NOT_FOUND for posting and reading", async () => {
    const missing = crypto.randomUUID()
    await expectProblem(await post(missing, { agent_id: "a", content: "x" }), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(`/v1/sessions/${missing}/messages`, withKey(key)), 404, "SESSION_NOT_FOUND")
  })
})

sqliteOnly("reads the SQLite file directly")("deleting a session deletes its messages and its memory", async () => {
  const sessionId = await newSession()
  for (let i = 0; i < 3; i++) await post(sessionId, { agent_id: "a", content: `m${i}` })
  const put = await server.fetch(`/v1/sessions/${sessionId}/memory/plan`, withKey(key, { method: "PUT", body: JSON.stringify({ value: 1 }) }))
  expect(put.status).toBe(200)
  expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key, { method: "DELETE" }))).status).toBe(204)
  await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key)), 404, "SESSION_NOT_FOUND")
  const db = new Database(server.databaseFile, { readonly: true })
  try {
    expect(db.query("SELECT count(*) AS n FROM messages WHERE session_id = ?").get(sessionId)).toEqual({ n: 0 })
    expect(db.query("SELECT count(*) AS n FROM memory WHERE session_id = ?").get(sessionId)).toEqual({ n: 0 })
  } finally {
    db.close()
  }
})
