/**
 * Message posts and memory puts are group-committed (several per transaction) and each caller still
 * gets its own answer: `seq` gapless per session, a bad row failing only its own write, idempotent
 * replays intact, a missing session the 404 of its own callers only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect } from "../support/postgres.js"
import { expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

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
  content: string
}

const newSession = async () =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const post = (sessionId: string, content: string, headers: Record<string, string> = {}) =>
  server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, { method: "POST", body: JSON.stringify({ agent_id: "a", content }), headers }))

const stored = async (sessionId: string) => {
  const response = await server.fetch(`/v1/sessions/${sessionId}/messages?limit=200`, withKey(key))
  expect(response.status).toBe(200)
  return ((await response.json()) as { data: Array<MessageBody> }).data
}

const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

/** The batches of one kind of write (`messages.append`, `memory.put`) written so far and the rows in them, from `/metrics`. */
const batchesOf = async (write: string) => {
  const text = await (await server.admin("/metrics")).text()
  const value = (name: string) =>
    Number(new RegExp(`^bulwark_write_batch_size_${name}\\{[^}]*write="${write}"[^}]*\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
  const splits = Number(new RegExp(`^bulwark_write_batch_splits_total\\{[^}]*write="${write}"[^}]*\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
  return { count: value("count"), rows: value("sum"), splits }
}
const batches = () => batchesOf("messages.append")

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

/**
 * Runs `body` while inserting `value` into `table.column` is refused by a trigger (a row the database
 * refuses on its own account, as a broken constraint would be), on either database.
 */
const whilePoisoned = async (table: "messages" | "memory", column: string, body: () => Promise<void>) => {
  const name = `poison_${table}`
  const onPostgres = !server.databaseUrl.startsWith("file:")
  await execute(onPostgres
    ? [
      `CREATE FUNCTION ${name}() RETURNS trigger AS $$ BEGIN
         IF NEW.${column} = 'poison' THEN RAISE EXCEPTION 'poisoned row' USING ERRCODE = '23514'; END IF;
         RETURN NEW; END $$ LANGUAGE plpgsql`,
      `CREATE TRIGGER ${name} BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}()`
    ]
    : [`CREATE TRIGGER ${name} BEFORE INSERT ON ${table} WHEN NEW.${column} = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`])
  try {
    await body()
  } finally {
    await execute(onPostgres ? [`DROP TRIGGER ${name} ON ${table}`, `DROP FUNCTION ${name}()`] : [`DROP TRIGGER ${name}`])
  }
}

describe("group commit", () => {
  test("40 concurrent posts to one session are written in fewer transactions than posts, seq 1..40 each once", async () => {
    const sessionId = await newSession()
    const before = await batches()
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => post(sessionId, `m${i}`)))
    expect(responses.map((response) => response.status)).toEqual(Array(40).fill(201))
    const posted = (await Promise.all(responses.map((response) => response.json()))) as Array<MessageBody>
    expect(posted.map((message) => message.seq).sort((a, b) => a - b)).toEqual(oneTo(40))
    const rows = await stored(sessionId)
    expect(rows.map((message) => message.seq)).toEqual(oneTo(40))
    const bySeq = new Map(posted.map((message) => [message.seq, message]))
    for (const row of rows) expect(row).toEqual(bySeq.get(row.seq)!)
    const after = await batches()
    expect(after.rows - before.rows).toBe(40)
    expect(after.count - before.count).toBeLessThan(40)
  })

  test("concurrent posts to many sessions: each session is numbered 1..n on its own", async () => {
    const sessions = await Promise.all(Array.from({ length: 8 }, newSession))
    const responses = await Promise.all(sessions.flatMap((sessionId) => Array.from({ length: 6 }, (_, i) => post(sessionId, `s${i}`))))
    expect(responses.map((response) => response.status)).toEqual(Array(48).fill(201))
    const posted = (await Promise.all(responses.map((response) => response.json()))) as Array<MessageBody>
    for (const sessionId of sessions) {
      expect(posted.filter((message) => message.session_id === sessionId).map((message) => message.seq).sort((a, b) => a - b)).toEqual(oneTo(6))
      expect((await stored(sessionId)).map((message) => message.seq)).toEqual(oneTo(6))
    }
  })

  test("a row that breaks a constraint fails only its own post; the others of its batch land, gapless", async () => {
    const sessionId = await newSession()
    await whilePoisoned("messages", "content", async () => {
      const before = await batches()
      const contents = Array.from({ length: 20 }, (_, i) => (i === 7 ? "poison" : `ok${i}`))
      const responses = await Promise.all(contents.map((content) => post(sessionId, content)))
      const poisoned = await expectProblem(responses[7]!, 500, "INTERNAL_ERROR")
      const others = responses.filter((_, i) => i !== 7)
      expect(others.map((response) => response.status)).toEqual(Array(19).fill(201))
      const posted = (await Promise.all(others.map((response) => response.json()))) as Array<MessageBody>
      expect(posted.map((message) => message.seq).sort((a, b) => a - b)).toEqual(oneTo(19))
      const rows = await stored(sessionId)
      expect(rows.map((message) => message.seq)).toEqual(oneTo(19))
      expect(rows.map((message) => message.content)).not.toContain("poison")
      expect((await ledgerRecord(server, poisoned.error_id)).severity).toBe("critical")
      // The poison shared a batch with others, which was then written again row by row.
      expect((await batches()).splits - before.splits).toBeGreaterThanOrEqual(1)
    })
  })

  test("a session deleted while its posts are being batched: its posts are 201 or 404, the other session's all land", async () => {
    const kept = await newSession()
    const doomed = await newSession()
    const keptPosts = Array.from({ length: 15 }, (_, i) => post(kept, `k${i}`))
    const doomedPosts = Array.from({ length: 15 }, (_, i) => post(doomed, `d${i}`))
    const deleted = server.fetch(`/v1/sessions/${doomed}`, withKey(key, { method: "DELETE" }))
    const laterDoomed = Array.from({ length: 5 }, (_, i) => post(doomed, `late${i}`))
    expect((await deleted).status).toBe(204)
    const keptResponses = await Promise.all(keptPosts)
    expect(keptResponses.map((response) => response.status)).toEqual(Array(15).fill(201))
    expect((await stored(kept)).map((message) => message.seq)).toEqual(oneTo(15))
    for (const response of await Promise.all([...doomedPosts, ...laterDoomed])) {
      if (response.status === 404) await expectProblem(response, 404, "SESSION_NOT_FOUND")
      else expect(response.status).toBe(201)
    }
    await expectProblem(await server.fetch(`/v1/sessions/${doomed}/messages`, withKey(key)), 404, "SESSION_NOT_FOUND")
  })

  test("idempotent repeats racing batched posts get the one first message; seq stays gapless", async () => {
    const sessionId = await newSession()
    const idempotencyKey = crypto.randomUUID()
    const responses = await Promise.all(
      Array.from({ length: 24 }, (_, i) => (i % 4 === 0 ? post(sessionId, "once", { "idempotency-key": idempotencyKey }) : post(sessionId, `p${i}`)))
    )
    expect(responses.map((response) => response.status)).toEqual(Array(24).fill(201))
    const posted = (await Promise.all(responses.map((response) => response.json()))) as Array<MessageBody>
    const repeats = posted.filter((_, i) => i % 4 === 0)
    expect(new Set(repeats.map((message) => message.id)).size).toBe(1)
    for (const repeat of repeats) expect(repeat).toEqual(repeats[0]!)
    const rows = await stored(sessionId)
    expect(rows.map((message) => message.seq)).toEqual(oneTo(19))
    expect(rows.filter((message) => message.content === "once")).toEqual([repeats[0]!])
  })
})

interface Entry {
  key: string
  value: unknown
}

const put = (sessionId: string, name: string, value: unknown) =>
  server.fetch(`/v1/sessions/${sessionId}/memory/${name}`, withKey(key, { method: "PUT", body: JSON.stringify({ value }) }))

const read = async (sessionId: string, name: string) => ((await (await server.fetch(`/v1/sessions/${sessionId}/memory/${name}`, withKey(key))).json()) as Entry).value

describe("memory puts, group-committed", () => {
  test("30 concurrent puts are written in fewer transactions than puts; each answer is its own entry, and each is stored", async () => {
    const sessionId = await newSession()
    const before = await batchesOf("memory.put")
    const names = Array.from({ length: 30 }, (_, i) => `k${i}`)
    const responses = await Promise.all(names.map((name, i) => put(sessionId, name, { i })))
    expect(responses.map((response) => response.status)).toEqual(Array(30).fill(200))
    const answered = (await Promise.all(responses.map((response) => response.json()))) as Array<Entry>
    expect(answered).toEqual(names.map((name, i) => expect.objectContaining({ key: name, value: { i } })))
    for (const [i, name] of names.entries()) expect(await read(sessionId, name)).toEqual({ i })
    const after = await batchesOf("memory.put")
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
    await whilePoisoned("memory", "key", async () => {
      const before = await batchesOf("memory.put")
      const names = Array.from({ length: 16 }, (_, i) => (i === 5 ? "poison" : `fine${i}`))
      const responses = await Promise.all(names.map((name, i) => put(sessionId, name, i)))
      await expectProblem(responses[5]!, 500, "INTERNAL_ERROR")
      expect(responses.filter((_, i) => i !== 5).map((response) => response.status)).toEqual(Array(15).fill(200))
      for (const [i, name] of names.entries()) if (i !== 5) expect(await read(sessionId, name)).toBe(i)
      expect((await batchesOf("memory.put")).splits - before.splits).toBeGreaterThanOrEqual(1)
    })
  })
})
