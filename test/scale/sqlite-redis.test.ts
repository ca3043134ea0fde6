/**
 * Three separate Bulwark processes on one SQLite file and one Redis (a Redis of the test's own)
 * behave as one server (SPEC §8): `seq` stays gapless whichever instance a post reaches, racing
 * Idempotency-Key repeats on different instances replay one result, a key revoked or deleted
 * through one instance is refused by all within 1 s (also while Redis is down or paused), and a
 * kill -9 under write load loses no acknowledged write.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { withKey } from "../support/server.js"
import { type Cluster, type Instance, startCluster } from "../support/instances.js"
import { expectEveryWriteKept, killOneUnderWriteLoad, measureRevocation, postMessage, racingIdempotentPosts } from "./checks.js"

const available = requireRedisServer()

describe.skipIf(!available)("three processes on one SQLite file and one Redis", () => {
  let redis: OwnRedis
  let cluster: Cluster
  let instances: Array<Instance>
  let key: string

  beforeAll(async () => {
    redis = await startOwnRedis()
    cluster = startCluster({ redisUrl: redis.url })
    // Started together: their migrations race on a fresh file, as a deployment's would.
    instances = await Promise.all(["a", "b", "c"].map((name) => cluster.start(name)))
    key = (await cluster.createTenant(instances[0]!)).api_key
  }, 60_000)
  afterAll(async () => {
    await cluster?.close()
    await redis?.stop()
  }, 30_000)

  const newSession = async (via: Instance) => {
    const response = await via.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))
    expect(response.status).toBe(201)
    return ((await response.json()) as { id: string }).id
  }

  test("seq is 1..N with no gap or repeat under concurrent posts spread over the instances", async () => {
    const sessionId = await newSession(instances[0]!)
    const posts = Array.from({ length: 60 }, (_, i) => postMessage(instances[i % 3]!, key, sessionId, `m${i}`))
    const seqs = (await Promise.all(posts)).map((posted) => posted.seq).sort((x, y) => x - y)
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
    await expectEveryWriteKept(instances[2]!, key, sessionId, 60)
  }, 30_000)

  test("racing Idempotency-Key repeats on different instances all get the first result, and one message is written", async () => {
    const sessionId = await newSession(instances[1]!)
    await racingIdempotentPosts(instances, key, sessionId, 10)
  }, 30_000)

  test("a key revoked or deleted through one instance is refused by every instance within 1 s", async () => {
    const delays = await measureRevocation(cluster, instances, "redis up")
    for (const delay of delays) expect(delay).toBeLessThan(1000)
  }, 30_000)

  test("while Redis is down, a revocation through one instance is refused by every instance within 1 s", async () => {
    await redis.kill()
    try {
      const delays = await measureRevocation(cluster, instances, "redis killed")
      for (const delay of delays) expect(delay).toBeLessThan(1000)
    } finally {
      await redis.start()
    }
  }, 30_000)

  test("a revocation made while Redis is paused stays refused once Redis answers again", async () => {
    const delays = await measureRevocation(cluster, instances, "redis paused", {
      duringRevocation: async () => {
        await redis.cli("CLIENT", "PAUSE", "1500", "ALL")
      },
      // Checked past the pause: nothing Redis kept from before may bring the key back.
      holdFor: 2500
    })
    for (const delay of delays) expect(delay).toBeLessThan(1000)
  }, 30_000)

  test("kill -9 of one instance under write load: every acknowledged write is kept and seq stays gapless", async () => {
    instances = await killOneUnderWriteLoad({ instances, cluster, key, sessionId: await newSession(instances[0]!) })
  }, 60_000)
})
