/** Live session events over SSE, through a real HTTP client reading the stream as it arrives. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"
import { openEvents, type SseClient } from "../support/sse.js"

let server: TestServer
let key: string

beforeAll(async () => {
  // A short heartbeat, so pings and the checks that ride on them are seen within the test.
  server = await startServer({ eventHeartbeat: "200 millis" })
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

interface MessageBody {
  id: string
  seq: number
  content: string
}

const newSession = async () =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const post = async (sessionId: string, content: string) => {
  const response = await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, {
    method: "POST",
    body: JSON.stringify({ agent_id: "writer", content })
  }))
  expect(response.status).toBe(201)
  return (await response.json()) as MessageBody
}

const subscribe = async (sessionId: string, headers: Record<string, string> = {}, query = "") => {
  const client = await openEvents(`${server.url}/v1/sessions/${sessionId}/events${query}`, withKey(key, { headers }))
  expect(client.response.status).toBe(200)
  expect(client.response.headers.get("content-type")).toBe("text/event-stream")
  expect(client.response.headers.get("x-request-id")).toBeTruthy()
  return client
}

/** The next `count` message events: their seq and content, checked against their `id:` lines. */
const messages = async (client: SseClient, count: number) => {
  const received: Array<{ seq: number; content: string }> = []
  for (let i = 0; i < count; i++) {
    const event = await client.nextEvent()
    expect(event.event).toBe("message")
    const message = JSON.parse(event.data) as MessageBody
    expect(event.id).toBe(String(message.seq))
    received.push({ seq: message.seq, content: message.content })
  }
  return received
}

/** Nothing but pings for a while: no repeated or unexpected event. */
const quiet = async (client: SseClient, millis = 500) => {
  await expect(client.nextEvent(millis)).rejects.toThrow(/no event within/)
}

const openStreams = async () => {
  const text = await (await server.admin("/metrics")).text()
  return Number(/^bulwark_event_streams_open (\d+)$/m.exec(text)?.[1] ?? "0")
}

describe("live messages", () => {
  test("a subscriber sees each new message once, in order, as it is posted (not the ones before)", async () => {
    const sessionId = await newSession()
    await post(sessionId, "before")
    const client = await subscribe(sessionId)
    try {
      const posted = [await post(sessionId, "one"), await post(sessionId, "two"), await post(sessionId, "three")]
      expect(await messages(client, 3)).toEqual(posted.map(({ content, seq }) => ({ seq, content })))
      await quiet(client)
    } finally {
      client.close()
    }
  })

  test("Last-Event-ID resumes after that seq: the missed ones first, then live, none twice", async () => {
    const sessionId = await newSession()
    for (const content of ["m1", "m2", "m3", "m4"]) await post(sessionId, content)
    const client = await subscribe(sessionId, { "last-event-id": "2" })
    try {
      expect(await messages(client, 2)).toEqual([{ seq: 3, content: "m3" }, { seq: 4, content: "m4" }])
      await post(sessionId, "m5")
      expect(await messages(client, 1)).toEqual([{ seq: 5, content: "m5" }])
      await quiet(client)
    } finally {
      client.close()
    }
    // A client that cannot send headers resumes with ?after= instead.
    const byQuery = await subscribe(sessionId, {}, "?after=4")
    try {
      expect(await messages(byQuery, 1)).toEqual([{ seq: 5, content: "m5" }])
    } finally {
      byQuery.close()
    }
  })

  test("a reconnect after a drop misses nothing posted meanwhile", async () => {
    const sessionId = await newSession()
    const first = await subscribe(sessionId)
    await post(sessionId, "a")
    const [lastSeen] = await messages(first, 1)
    first.close()
    await post(sessionId, "b")
    await post(sessionId, "c")
    const second = await subscribe(sessionId, { "last-event-id": String(lastSeen!.seq) })
    try {
      expect(await messages(second, 2)).toEqual([{ seq: 2, content: "b" }, { seq: 3, content: "c" }])
    } finally {
      second.close()
    }
  })

  test("the stream sends ': ping' on the heartbeat", async () => {
    const client = await subscribe(await newSession())
    try {
      const item = await client.next(1000)
      expect(item).toEqual({ comment: "ping" })
    } finally {
      client.close()
    }
  })
})

describe("the end of a stream", () => {
  test("deleting the session sends event: error with SESSION_NOT_FOUND and an error_id in the ledger, then ends", async () => {
    const sessionId = await newSession()
    const client = await subscribe(sessionId)
    expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key, { method: "DELETE" }))).status).toBe(204)
    const event = await client.nextEvent()
    expect(event.event).toBe("error")
    const data = JSON.parse(event.data) as { code: string; error_id: string; detail: string }
    expect(data.code).toBe("SESSION_NOT_FOUND")
    expect(data.detail).toContain(sessionId)
    await client.ended()
    const record = await ledgerRecord(server, data.error_id)
    expect(record).toMatchObject({ type: "stream", code: "SESSION_NOT_FOUND", session_id: sessionId, route: "/v1/sessions/{id}/events" })
    expect(record.request_id).toBeTruthy()
  })

  sqliteOnly("renames a table through a second SQLite connection")("a database that fails mid-stream sends event: error with DATABASE_UNAVAILABLE, ledgered as type stream", async () => {
    const sessionId = await newSession()
    const client = await subscribe(sessionId)
    const other = new Database(server.databaseFile)
    let data: { code: string; error_id: string; detail: string }
    try {
      other.run("ALTER TABLE sessions RENAME TO sessions_away")
      // The next heartbeat's check cannot read the session.
      const event = await client.nextEvent(2000)
      expect(event.event).toBe("error")
      data = JSON.parse(event.data) as typeof data
      expect(data.code).toBe("DATABASE_UNAVAILABLE")
      expect(data.detail).toBe("The database could not serve this request.")
      await client.ended()
    } finally {
      other.run("ALTER TABLE sessions_away RENAME TO sessions")
      other.close()
    }
    const record = await ledgerRecord(server, data.error_id)
    expect(record).toMatchObject({ type: "stream", code: "DATABASE_UNAVAILABLE", status: 503, severity: "error", session_id: sessionId })
  })

  test("a client that disconnects releases its subscription at once", async () => {
    const sessionId = await newSession()
    const before = await openStreams()
    const clients = [await subscribe(sessionId), await subscribe(sessionId), await subscribe(sessionId)]
    await eventually(async () => ((await openStreams()) === before + 3 ? true : undefined))
    for (const client of clients) client.close()
    await eventually(async () => ((await openStreams()) === before ? true : undefined), 1000)
    // The server is still fine with the session and its streams.
    const again = await subscribe(sessionId)
    try {
      await post(sessionId, "after the disconnects")
      expect(await messages(again, 1)).toEqual([{ seq: 1, content: "after the disconnects" }])
    } finally {
      again.close()
    }
  })
})

describe("errors before the stream starts are plain problems", () => {
  test("404 for a missing or another tenant's session, 400 for a bad Last-Event-ID, 401 without a key", async () => {
    await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}/events`, withKey(key)), 404, "SESSION_NOT_FOUND")
    const sessionId = await newSession()
    const other = (await server.createTenant()).api_key
    await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/events`, withKey(other)), 404, "SESSION_NOT_FOUND")
    for (const bad of ["abc", "-1", "1.5"]) {
      await expectProblem(
        await server.fetch(`/v1/sessions/${sessionId}/events`, withKey(key, { headers: { "last-event-id": bad } })),
        400,
        "VALIDATION_FAILED"
      )
    }
    await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/events`), 401, "AUTH_MISSING")
  })
})

describe("an open stream and the server's idle timeout", () => {
  test("a stream with nothing to send outlives the idle timeout that closes other silent connections", async () => {
    // Pings only once a minute, and Bun closes a silent connection after one second.
    const quietServer = await startServer({ eventHeartbeat: "60 seconds", idleTimeoutSeconds: 1 })
    try {
      const quietKey = (await quietServer.createTenant()).api_key
      const sessionId = ((await (await quietServer.fetch("/v1/sessions", withKey(quietKey, { method: "POST", body: "{}" }))).json()) as { id: string }).id
      const client = await openEvents(`${quietServer.url}/v1/sessions/${sessionId}/events`, withKey(quietKey))
      // A keep-alive connection that says nothing after its request, for comparison: the idle timeout is in force.
      let silentClosedAt: number | undefined
      const silent = await Bun.connect({
        hostname: "127.0.0.1",
        port: Number(new URL(quietServer.url).port),
        socket: {
          open(socket) {
            socket.write("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
          },
          data() {},
          close() {
            silentClosedAt = performance.now()
          }
        }
      })
      try {
        await eventually(async () => (silentClosedAt !== undefined ? true : undefined), 6000)
        // Bun checks idle connections on a coarse timer: past two whole timeouts the stream would be gone too.
        await Bun.sleep(2500)
        const posted = await quietServer.fetch(`/v1/sessions/${sessionId}/messages`, withKey(quietKey, {
          method: "POST",
          body: JSON.stringify({ agent_id: "writer", content: "still there" })
        }))
        expect(posted.status).toBe(201)
        const event = await client.nextEvent(2000)
        expect(JSON.parse(event.data)).toMatchObject({ seq: 1, content: "still there" })
      } finally {
        silent.end()
        client.close()
      }
    } finally {
      await quietServer.close()
    }
  }, 15_000)
})

describe("instances on one database without Redis", () => {
  // Without a bus they cannot hear each other: streams check the shared database every second.
  test("a message posted through one instance reaches a stream on another within seconds, with no Redis", async () => {
    const first = await startServer({ eventHeartbeat: "60 seconds" })
    const second = await startServer({ eventHeartbeat: "60 seconds", databaseFile: first.databaseFile })
    try {
      const sharedKey = (await first.createTenant()).api_key
      const sessionId = ((await (await first.fetch("/v1/sessions", withKey(sharedKey, { method: "POST", body: "{}" }))).json()) as { id: string }).id
      const client = await openEvents(`${second.url}/v1/sessions/${sessionId}/events`, withKey(sharedKey))
      try {
        expect(client.response.status).toBe(200)
        for (const content of ["one", "two"]) {
          const posted = await first.fetch(`/v1/sessions/${sessionId}/messages`, withKey(sharedKey, {
            method: "POST",
            body: JSON.stringify({ agent_id: "writer", content })
          }))
          expect(posted.status).toBe(201)
          const { seq } = (await posted.json()) as { seq: number }
          const event = await client.nextEvent(3000)
          expect(JSON.parse(event.data)).toMatchObject({ seq, content })
        }
        await quiet(client, 1500)
      } finally {
        client.close()
      }
    } finally {
      await second.close()
      await first.close()
    }
  }, 20_000)
})
