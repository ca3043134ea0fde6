/**
 * Memory puts are group-committed (several per transaction), as message posts are, and each caller
 * still gets its own answer: its own stored entry, its own 404, its own failure.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect } from "../support/postgres.js"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer()
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

interface Entry {
  key: string
  value: unknown
}

const newSession = async () =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const put = (sessionId: string, name: string, value: unknown) =>
  server.fetch(`/v1/sessions/${sessionId}/memory/${name}`, withKey(key, { method: "PUT", body: JSON.stringify({ value }) }))

const read = async (sessionId: string, name: string) => ((await (await server.fetch(`/v1/sessions/${sessionId}/memory/${name}`, withKey(key))).json()) as Entry).value

/** The put batches written so far and the puts in them, from `/metrics`. */
const batches = async () => {
  const text = await (await server.admin("/metrics")).text()
  const value = (name: string) =>
    Number(new RegExp(`^bulwark_write_batch_size_${name}\\{[^}]*write="memory.put"[^}]*\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
  const splits = Number(/^bulwark_write_batch_splits_total\{[^}]*write="memory.put"[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0)
  return { count: value("count"), rows: value("sum"), splits }
}

/** Runs DDL on the server's own database, whichever it is. */
const execute = async (statements: ReadonlyArray<string>) => {
  if (server.databaseUrl.startsWith("file:")) {
    const { Database } = await import("bun:sqlite")
    const db = new Database(server.databaseFile)
    try {
      for (const statement of statements) db.run(statement)
    } finally {
      db.close()
    }
    return
  }
  const db = connect(server.databaseUrl)
  try {
    for (const statement of statements) await db.unsafe(statement)
  } finally {
    await db.close()
  }
}

describe("memory puts, group-committed", () => {
  test("30 concurrent puts are written in fewer transactions than puts; each answer is its own entry, and each is stored", async () => {
    const sessionId = await newSession()
    const before = await batches()
    const names = Array.from({ length: 30 }, (_, i) => `k${i}`)
    const responses = await Promise.all(names.map((name, i) => put(sessionId, name, { i })))
    expect(responses.map((response) => response.status)).toEqual(Array(30).fill(200))
    const answered = (await Promise.all(responses.map((response) => response.json()))) as Array<Entry>
    expect(answered).toEqual(names.map((name, i) => expect.objectContaining({ key: name, value: { i } })))
    for (const [i, name] of names.entries()) expect(await read(sessionId, name)).toEqual({ i })
    const after = await batches()
    expect(after.rows - before.rows).toBe(30)
    expect(after.count - before.count).toBeLessThan(30)
  })

  test("concurrent puts of one key: each caller is answered with its own value, and the key ends with one of them", async () => {
    const sessionId = await newSession()
    const responses = await Promise.all(Array.from({ length: 12 }, (_, i) => put(sessionId, "shared", i)))
    const answered = (await Promise.all(responses.map((response) => response.json()))) as Array<Entry>
    expect(answered.map((entry) => entry.value)).toEqual(Array.from({ length: 12 }, (_, i) => i))
    expect(answered.map((entry) => entry.value)).toContain(await read(sessionId, "shared"))
  })

  test("a put to a missing session in the same batch is that caller's 404; the others land", async () => {
    const sessionId = await newSession()
    const responses = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => put(sessionId, `ok${i}`, i)),
      put(crypto.randomUUID(), "lost", 1)
    ])
    expect(responses.slice(0, 10).map((response) => response.status)).toEqual(Array(10).fill(200))
    await expectProblem(responses[10]!, 404, "SESSION_NOT_FOUND")
    for (let i = 0; i < 10; i++) expect(await read(sessionId, `ok${i}`)).toBe(i)
  })

  test("a put the database refuses fails only its own caller; the others of its batch are written again one by one and land", async () => {
    const sessionId = await newSession()
    const onPostgres = !server.databaseUrl.startsWith("file:")
    await execute(onPostgres
      ? [
        `CREATE FUNCTION poison_memory() RETURNS trigger AS $$ BEGIN
           IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poisoned row' USING ERRCODE = '23514'; END IF;
           RETURN NEW; END $$ LANGUAGE plpgsql`,
        "CREATE TRIGGER poison_memory BEFORE INSERT ON memory FOR EACH ROW EXECUTE FUNCTION poison_memory()"
      ]
      : ["CREATE TRIGGER poison_memory BEFORE INSERT ON memory WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"])
    try {
      const before = await batches()
      const names = Array.from({ length: 16 }, (_, i) => (i === 5 ? "poison" : `fine${i}`))
      const responses = await Promise.all(names.map((name, i) => put(sessionId, name, i)))
      await expectProblem(responses[5]!, 500, "INTERNAL_ERROR")
      expect(responses.filter((_, i) => i !== 5).map((response) => response.status)).toEqual(Array(15).fill(200))
      for (const [i, name] of names.entries()) if (i !== 5) expect(await read(sessionId, name)).toBe(i)
      expect((await batches()).splits - before.splits).toBeGreaterThanOrEqual(1)
    } finally {
      await execute(onPostgres ? ["DROP TRIGGER poison_memory ON memory", "DROP FUNCTION poison_memory()"] : ["DROP TRIGGER poison_memory"])
    }
  })
})
