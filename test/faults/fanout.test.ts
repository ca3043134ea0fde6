/**
 * Session events across processes: two instances sharing one database and one Redis (a Redis of the
 * test's own). The database is the truth and the bus a hint: whatever happens to Redis (killed,
 * paused, a publish missed, a poster that cannot publish), a subscriber on the other instance gets
 * every committed message once, in `seq` order, within a few seconds. Both instances ping and check
 * only once a minute, so anything delivered sooner came through the bus or through the checks an
 * unwell bus triggers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defaultCacheResilience } from "../../layers/cache/Cache.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { eventually, startServer, type TestServer, withKey } from "../support/server.js"
import { openEvents, type SseClient } from "../support/sse.js"
import { faultMatrix } from "../support/faultMatrix.js"

const available = requireRedisServer()

/** How long a message may take to reach the other instance while the bus is unwell (SPEC §8: checks every second). */
const CATCH_UP_BOUND_MILLIS = 5000
const TEST_TIMEOUT_MILLIS = 30_000
/** Long enough for two posts and their catch-up to happen while Redis does not answer. */
const PAUSE_MILLIS = 4000

describe.skipIf(!available)("fan-out through Redis", () => {
  let redis: OwnRedis
  /** Subscribes. */
  let listener: TestServer
  /** Posts; its cache breaker never opens on its own here, so each failed publish is a ledgered Redis error. */
  let poster: TestServer
  let key: string
  /** Delays measured from a post's answer to its event on the other instance, by scenario (printed at the end). */
  const delays: Record<string, Array<number>> = {}

  beforeAll(async () => {
    redis = await startOwnRedis()
    listener = await startServer({ redisUrl: redis.url, eventHeartbeat: "60 seconds" })
    poster = await startServer({
      redisUrl: redis.url,
      databaseFile: listener.databaseFile,
      eventHeartbeat: "60 seconds",
      cacheResilience: { breaker: { ...defaultCacheResilience.breaker, consecutiveFailures: 1000, minimumCalls: 1000, windowSize: 1000 } }
    })
    key = (await listener.createTenant()).api_key
  })
  afterAll(async () => {
    console.log(`catch-up delays on the other instance (ms): ${JSON.stringify(delays)}`)
    await poster.close()
    await listener.close()
    await redis.stop()
  })

  const newSession = async () =>
    ((await (await poster.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

  /** Posts through the poster; answers the message's seq and when the post was answered. */
  const post = async (sessionId: string, content: string) => {
    const response = await poster.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, {
      method: "POST",
      body: JSON.stringify({ agent_id: "writer", content })
    }))
    expect(response.status).toBe(201)
    return { seq: ((await response.json()) as { seq: number }).seq, at: performance.now(), response }
  }

  const subscribe = async (server: TestServer, sessionId: string) => {
    const client = await openEvents(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
    expect(client.response.status).toBe(200)
    return client
  }

  /** The next message events, checked to be exactly `posted` in order, each within the bound; records the delays. */
  const expectDelivered = async (client: SseClient, posted: Array<{ seq: number; at: number }>, scenario: string) => {
    for (const { seq, at } of posted) {
      const event = await client.nextEvent(CATCH_UP_BOUND_MILLIS)
      expect(event.event).toBe("message")
      expect(event.id).toBe(String(seq))
      ;(delays[scenario] ??= []).push(Math.round(performance.now() - at))
    }
  }

  /** Nothing more arrives (no repeat from a late or replayed publish). */
  const expectQuiet = async (client: SseClient, millis = 1500) => {
    await expect(client.nextEvent(millis)).rejects.toThrow(/no event within/)
  }

  /** Redis answers again and the listener's subscription is back: a message posted now arrives at once. */
  const busIsBack = async (client: SseClient, sessionId: string) =>
    eventually(async () => {
      const posted = await post(sessionId, "after the fault")
      const event = await client.nextEvent(CATCH_UP_BOUND_MILLIS)
      expect(event.id).toBe(String(posted.seq))
      return performance.now() - posted.at < 300 ? true : undefined
    }, 10_000)

  test("a subscriber on one instance sees messages posted through another, in order, at once", async () => {
    const sessionId = await newSession()
    const client = await subscribe(listener, sessionId)
    try {
      for (const content of ["one", "two", "three"]) {
        const posted = await post(sessionId, content)
        const event = await client.nextEvent(1000)
        expect(JSON.parse(event.data)).toMatchObject({ seq: posted.seq, content })
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
  }, TEST_TIMEOUT_MILLIS)

  test("Redis killed: the posts stand, the failed publish is ledgered, the other instance catches up from the database; after a restart fan-out resumes", async () => {
    const sessionId = await newSession()
    const client = await subscribe(listener, sessionId)
    try {
      const fault = faultMatrix(poster, "redis-killed-fanout", { broken: "Redis pub/sub between two instances", how: "SIGKILL while a subscriber on one instance follows posts made through the other; `POST .../messages`", dependency: "cache", ledgerCode: "CACHE_UNAVAILABLE" })
      await redis.kill()
      const posted = [await post(sessionId, "down 1"), await post(sessionId, "down 2"), await post(sessionId, "down 3")]
      for (const { response } of posted) await fault.saw(response)
      await expectDelivered(client, posted, "killed")
      // Never silent: the failed publish is in the ledger, at warning, with the session.
      const ledgered = await eventually(async () => {
        const response = await poster.admin(`/v1/admin/errors?code=CACHE_UNAVAILABLE&session_id=${sessionId}`)
        const rows = ((await response.json()) as { data: Array<{ severity: string; type: string }> }).data
        return rows.length > 0 ? rows : undefined
      })
      expect(ledgered[0]).toMatchObject({ severity: "warning", type: "cache" })

      await redis.start()
      fault.healed()
      await busIsBack(client, sessionId)
      await fault.recovered()
      await expectDelivered(client, [await post(sessionId, "up again")], "after restart")
      await expectQuiet(client)
    } finally {
      client.close()
    }
  }, TEST_TIMEOUT_MILLIS)

  const pauses: Array<[string, (millis: number) => void]> = [
    ["CLIENT PAUSE ALL", (millis) => void redis.cli("CLIENT", "PAUSE", String(millis), "ALL")],
    // DEBUG SLEEP holds the whole server, the caller's connection included: not awaited.
    ["DEBUG SLEEP", (millis) => void redis.cli("DEBUG", "SLEEP", String(millis / 1000))]
  ]
  for (const [how, pause] of pauses) {
    test(`Redis paused (${how}): messages reach the other instance while it is paused, and the late publishes add nothing`, async () => {
      const sessionId = await newSession()
      const client = await subscribe(listener, sessionId)
      try {
        const pausedAt = performance.now()
        pause(PAUSE_MILLIS)
        await Bun.sleep(50)
        const posted = [await post(sessionId, `paused 1 (${how})`), await post(sessionId, `paused 2 (${how})`)]
        await expectDelivered(client, posted, how)
        // From the database: Redis is still paused.
        expect(performance.now() - pausedAt).toBeLessThan(PAUSE_MILLIS)
        await busIsBack(client, sessionId)
        await expectQuiet(client)
      } finally {
        client.close()
      }
    }, TEST_TIMEOUT_MILLIS)
  }

  test("a publish missed by the subscriber (its connection killed with CLIENT KILL) arrives from the database, once", async () => {
    const sessionId = await newSession()
    const client = await subscribe(listener, sessionId)
    try {
      expect(Number(await redis.cli("CLIENT", "KILL", "TYPE", "pubsub"))).toBeGreaterThan(0)
      // Redis takes this publish, but nobody is subscribed to hear it.
      const posted = await post(sessionId, "while nobody listens")
      await expectDelivered(client, [posted], "CLIENT KILL")
      await busIsBack(client, sessionId)
      await expectQuiet(client)
    } finally {
      client.close()
    }
  }, TEST_TIMEOUT_MILLIS)

  test("a poster that cannot publish (its cache breaker forced open) is missed by the others, who check the database", async () => {
    const sessionId = await newSession()
    const client = await subscribe(listener, sessionId)
    const breaker = (action: string) =>
      poster.admin("/v1/admin/breakers/cache", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action }) })
    try {
      expect((await breaker("open")).status).toBe(200)
      const posted = [await post(sessionId, "unannounced 1"), await post(sessionId, "unannounced 2")]
      await expectDelivered(client, posted, "poster breaker open")
      expect((await breaker("close")).status).toBe(200)
      await busIsBack(client, sessionId)
      await expectQuiet(client)
    } finally {
      client.close()
    }
  }, TEST_TIMEOUT_MILLIS)
})
