/** The session lifecycle, pagination and tenant isolation, through HTTP. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let key: string
let otherKey: string

beforeAll(async () => {
  server = await startServer()
  key = (await server.createTenant()).api_key
  otherKey = (await server.createTenant()).api_key
})
afterAll(() => server.close())

const createSession = async (apiKey: string, body: object = {}) => {
  const response = await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: JSON.stringify(body) }))
  expect(response.status).toBe(201)
  return (await response.json()) as { id: string; title: string | null; metadata: object; created_at: string; updated_at: string }
}

describe("session lifecycle", () => {
  test("create, read, list, delete, then 404", async () => {
    const created = await createSession(key, { title: "planning", metadata: { project: "apollo", depth: 3 } })
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(created).toMatchObject({ title: "planning", metadata: { project: "apollo", depth: 3 } })
    expect(new Date(created.created_at).toISOString()).toBe(created.created_at)

    const read = await server.fetch(`/v1/sessions/${created.id}`, withKey(key))
    expect(read.status).toBe(200)
    expect(await read.json()).toEqual(created)

    const listed = (await (await server.fetch("/v1/sessions", withKey(key))).json()) as { data: Array<{ id: string }> }
    expect(listed.data.map((session) => session.id)).toContain(created.id)

    const deleted = await server.fetch(`/v1/sessions/${created.id}`, withKey(key, { method: "DELETE" }))
    expect(deleted.status).toBe(204)
    expect(await deleted.text()).toBe("")
    await expectProblem(await server.fetch(`/v1/sessions/${created.id}`, withKey(key)), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(`/v1/sessions/${created.id}`, withKey(key, { method: "DELETE" })), 404, "SESSION_NOT_FOUND")
  })

  test("a client-chosen id is kept, lowercased", async () => {
    const id = crypto.randomUUID()
    const created = await createSession(key, { id: id.toUpperCase() })
    expect(created.id).toBe(id)
    expect((await server.fetch(`/v1/sessions/${id.toUpperCase()}`, withKey(key))).status).toBe(200)
  })

  test("a 404 is not remembered past the creation of that id (the miss is cached, then invalidated)", async () => {
    const id = crypto.randomUUID()
    await expectProblem(await server.fetch(`/v1/sessions/${id}`, withKey(key)), 404, "SESSION_NOT_FOUND")
    await expectProblem(await server.fetch(`/v1/sessions/${id}`, withKey(key)), 404, "SESSION_NOT_FOUND")
    await createSession(key, { id, title: "late" })
    const read = await server.fetch(`/v1/sessions/${id}`, withKey(key))
    expect(read.status).toBe(200)
    expect(await read.json()).toMatchObject({ id, title: "late" })
  })

  test("defaults: no title, empty metadata", async () => {
    const created = await createSession(key)
    expect(created).toMatchObject({ title: null, metadata: {} })
  })
})

describe("pagination", () => {
  test("walks more than one page with next_cursor, newest first, without repeats or gaps", async () => {
    const tenant = await server.createTenant()
    const created: Array<{ id: string; created_at: string }> = []
    for (let i = 0; i < 7; i++) created.push(await createSession(tenant.api_key, { title: `s${i}` }))
    // The listing order: newest first, and within one millisecond by id, descending.
    const expectedOrder = created
      .sort((a, b) => (a.created_at === b.created_at ? b.id.localeCompare(a.id) : b.created_at.localeCompare(a.created_at)))
      .map((session) => session.id)

    const seen: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? "?limit=3" : `?limit=3&cursor=${encodeURIComponent(cursor)}`
      const response = await server.fetch(`/v1/sessions${query}`, withKey(tenant.api_key))
      expect(response.status).toBe(200)
      const page = (await response.json()) as { data: Array<{ id: string }>; next_cursor: string | null }
      expect(page.data.length).toBeLessThanOrEqual(3)
      seen.push(...page.data.map((session) => session.id))
      cursor = page.next_cursor
      pages++
    } while (cursor !== null)
    expect(pages).toBe(3)
    expect(seen).toEqual(expectedOrder)
  })

  test("the default page is 50", async () => {
    const tenant = await server.createTenant()
    for (let i = 0; i < 51; i++) await createSession(tenant.api_key)
    const page = (await (await server.fetch("/v1/sessions", withKey(tenant.api_key))).json()) as {
      data: Array<unknown>
      next_cursor: string | null
    }
    expect(page.data.length).toBe(50)
    expect(page.next_cursor).not.toBeNull()
  })
})

describe("tenant isolation", () => {
  test("every session route answers 404 for another tenant's session", async () => {
    const theirs = await createSession(otherKey, { title: "not yours" })
    await expectProblem(await server.fetch(`/v1/sessions/${theirs.id}`, withKey(key)), 404, "SESSION_NOT_FOUND")
    await expectProblem(
      await server.fetch(`/v1/sessions/${theirs.id}`, withKey(key, { method: "DELETE" })),
      404,
      "SESSION_NOT_FOUND"
    )
    const listed = (await (await server.fetch("/v1/sessions?limit=200", withKey(key))).json()) as { data: Array<{ id: string }> }
    expect(listed.data.map((session) => session.id)).not.toContain(theirs.id)
    // Still there for its owner: the failed delete above touched nothing.
    expect((await server.fetch(`/v1/sessions/${theirs.id}`, withKey(otherKey))).status).toBe(200)
  })

  test("the same client-chosen id in two tenants is two sessions", async () => {
    const id = crypto.randomUUID()
    await createSession(key, { id, title: "mine" })
    const theirs = await createSession(otherKey, { id, title: "theirs" })
    expect(theirs.title).toBe("theirs")
    const mine = (await (await server.fetch(`/v1/sessions/${id}`, withKey(key))).json()) as { title: string }
    expect(mine.title).toBe("mine")
  })
})
