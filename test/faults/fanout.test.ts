/**
 * Session events across processes: instances sharing one database and one Redis (a Redis of the
 * test's own). A subscriber on one instance sees what is posted through another; when Redis dies the
 * post still succeeds, the failure is ledgered, and subscribers catch up from the database.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultCacheResilience } from "../../layers/cache/Cache.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { eventually, startServer, type TestServer, withKey } from "../support/server.js"
import { openEvents, type SseClient } from "../support/sse.js"

const available = requireRedisServer()

describe.skipIf(!available)("fan-out through Redis", () => {
  let redis: OwnRedis
  /** Subscribes; its heartbeat is a minute, so anything it sees sooner came through Redis. */
  let listener: TestServer
  /** Posts; its cache breaker never opens here, so each failed publish is a ledgered Redis error. */
  let poster: TestServer
  /** Subscribes with a short heartbeat: it catches up from the database when Redis is gone. */
  let catcher: TestServer
  let key: string

  beforeAll(async () => {
    redis = await startOwnRedis()
    listener = await startServer({ redisUrl: redis.url, eventHeartbeat: "60 seconds" })
    poster = await startServer({
      redisUrl: redis.url,
      databaseFile: listener.databaseFile,
      eventHeartbeat: "60 seconds",
      cacheResilience: { breaker: { ...defaultCacheResilience.breaker, consecutiveFailures: 1000, minimumCalls: 1000, windowSize: 1000 } }
    })
    catcher = await startServer({ redisUrl: redis.url, databaseFile: listener.databaseFile, eventHeartbeat: "200 millis" })
    key = (await listener.createTenant()).api_key
  })
  afterAll(async () => {
    await catcher.close()
    await poster.close()
    await listener.close()
    await redis.stop()
  })

  const newSession = async () =>
    ((await (await poster.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

  const post = async (sessionId: string, content: string) => {
    const response = await poster.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, {
      method: "POST",
      body: JSON.stringify({ agent_id: "writer", content })
    }))
    expect(response.status).toBe(201)
    return ((await response.json()) as { seq: number }).seq
  }

  const subscribe = async (server: TestServer, sessionId: string) => {
    const client = await openEvents(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
    expect(client.response.status).toBe(200)
    return client
  }

  const contentOf = async (client: SseClient, millis: number) => {
    const event = await client.nextEvent(millis)
    expect(event.event).toBe("message")
    return (JSON.parse(event.data) as { content: string }).content
  }

  test("a subscriber on one instance sees messages posted through another, in order, at once", async () => {
    const sessionId = await newSession()
    const client = await subscribe(listener, sessionId)
    try {
      for (const content of ["one", "two", "three"]) {
        await post(sessionId, content)
        expect(await contentOf(client, 1000)).toBe(content)
      }
      // A delete through the other instance ends this stream too.
      expect((await poster.fetch(`/v1/sessions/${sessionId}`, withKey(key, { method: "DELETE" }))).status).toBe(204)
      const end = await client.nextEvent(1000)
      expect(end.event).toBe("error")
      expect(JSON.parse(end.data)).toMatchObject({ code: "SESSION_NOT_FOUND" })
      await client.ended()
    } finally {
      client.close()
    }
  })

  test("Redis down: the post stands, the failed publish is ledgered, subscribers catch up; after a restart fan-out resumes", async () => {
    const sessionId = await newSession()
    const catching = await subscribe(catcher, sessionId)
    const listening = await subscribe(listener, sessionId)
    try {
      await redis.kill()
      const seq = await post(sessionId, "while Redis is down")
      // Durable: it reads back through any instance.
      const stored = (await (await listener.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key))).json()) as { data: Array<{ seq: number }> }
      expect(stored.data.map((message) => message.seq)).toEqual([seq])
      // Never silent: the failed publish is in the ledger, at warning, with the session.
      const ledgered = await eventually(async () => {
        const response = await poster.admin(`/v1/admin/errors?code=CACHE_UNAVAILABLE&session_id=${sessionId}`)
        const rows = ((await response.json()) as { data: Array<{ severity: string; type: string }> }).data
        return rows.length > 0 ? rows : undefined
      })
      expect(ledgered[0]).toMatchObject({ severity: "warning", type: "cache" })
      // The short-heartbeat subscriber gets it from the database at its next check.
      expect(await contentOf(catching, 1500)).toBe("while Redis is down")

      // Back up: the listener's subscription reconnects; the next message wakes it, and it
      // catches up the one it missed first.
      await redis.start()
      const caughtUp = await eventually(async () => {
        await post(sessionId, "after the restart")
        try {
          return await contentOf(listening, 300)
        } catch {
          return undefined
        }
      }, 5000)
      expect(caughtUp).toBe("while Redis is down")
      expect(await contentOf(listening, 1000)).toBe("after the restart")
    } finally {
      catching.close()
      listening.close()
    }
  })
})
