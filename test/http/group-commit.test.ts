/**
 * Message posts are group-committed (several per transaction) and each poster still gets its own
 * answer: `seq` gapless per session, a bad row failing only its own post, idempotent replays intact.
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

/** The batches written so far and the rows in them, from `/metrics`. */
const batches = async () => {
  const text = await (await server.admin("/metrics")).text()
  const value = (name: string) =>
    Number(new RegExp(`^bulwark_write_batch_size_${name}\\{[^}]*write="messages.append"[^}]*\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
  const splits = Number(/^bulwark_write_batch_splits_total\{[^}]*write="messages.append"[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0)
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
    const onPostgres = !server.databaseUrl.startsWith("file:")
    await execute(onPostgres
      ? [
        `CREATE FUNCTION poison_message() RETURNS trigger AS $$ BEGIN
           IF NEW.content = 'poison' THEN RAISE EXCEPTION 'poisoned row' USING ERRCODE = '23514'; END IF;
           RETURN NEW; END $$ LANGUAGE plpgsql`,
        "CREATE TRIGGER poison_message BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison_message()"
      ]
      : ["CREATE TRIGGER poison_message BEFORE INSERT ON messages WHEN NEW.content = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"])
    try {
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
    } finally {
      await execute(onPostgres
        ? ["DROP TRIGGER poison_message ON messages", "DROP FUNCTION poison_message()"]
        : ["DROP TRIGGER poison_message"])
    }
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
