/**
 * Text is stored as sent, and PostgreSQL's text cannot hold U+0000: such input is a 400 on both
 * databases, never a 500 on one of them, and a ledger row is written whatever the request held.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let key: string
let sessionId: string

beforeAll(async () => {
  server = await startServer()
  key = (await server.createTenant()).api_key
  const created = await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: JSON.stringify({ title: "t" }) }))
  sessionId = ((await created.json()) as { id: string }).id
})
afterAll(() => server.close())

const post = (path: string, body: unknown) => server.fetch(path, withKey(key, { method: "POST", body: JSON.stringify(body) }))

test("a message whose content or agent holds U+0000 is 400 with a pointer; nothing is stored", async () => {
  const content = await expectProblem(await post(`/v1/sessions/${sessionId}/messages`, { agent_id: "a", content: "x\u0000y" }), 400, "VALIDATION_FAILED")
  expect(content.errors?.map((issue) => issue.pointer)).toContain("/content")
  await expectProblem(await post(`/v1/sessions/${sessionId}/messages`, { agent_id: "a\u0000", content: "x" }), 400, "VALIDATION_FAILED")
  const listed = (await (await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key))).json()) as { data: Array<unknown> }
  expect(listed.data).toEqual([])
})

test("a session title, a tenant name or a cursor holding U+0000 is 400", async () => {
  await expectProblem(await post("/v1/sessions", { title: "a\u0000b" }), 400, "VALIDATION_FAILED")
  await expectProblem(
    await server.admin("/v1/admin/tenants", { method: "POST", body: JSON.stringify({ name: "bad\u0000name" }) }),
    400,
    "VALIDATION_FAILED"
  )
  const cursor = Buffer.from(JSON.stringify(["2026-01-01T00:00:00.000Z", "x\u0000"])).toString("base64url")
  await expectProblem(await server.fetch(`/v1/sessions?cursor=${cursor}`, withKey(key)), 400, "VALIDATION_FAILED")
})

test("U+0000 in JSON metadata is stored escaped and reads back as sent", async () => {
  const created = await post("/v1/sessions", { metadata: { "k\u0000": "v\u0000" } })
  expect(created.status).toBe(201)
  const { id } = (await created.json()) as { id: string }
  const read = (await (await server.fetch(`/v1/sessions/${id}`, withKey(key))).json()) as { metadata: object }
  expect(read.metadata).toEqual({ "k\u0000": "v\u0000" })
})

test("a request whose body holds NUL bytes still leaves a ledger row that reads back", async () => {
  const response = await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, { method: "POST", body: "{\"agent_id\":\"a\",\u0000" }))
  const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
  const row = await ledgerRecord(server, problem.error_id)
  expect(row.code).toBe("VALIDATION_FAILED")
})
