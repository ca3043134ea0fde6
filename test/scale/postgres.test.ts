/**
 * Three separate Bulwark processes on one PostgreSQL behave as one server (SPEC §8), with Redis and
 * without it: `seq` stays gapless whichever instance a post reaches, racing Idempotency-Key
 * repeats on different instances replay one result, a key revoked or deleted through one instance
 * is refused by all within 1 s, rate limits hold across instances (through Redis, or counted in the
 * database without it), and a kill -9 under write load loses no acknowledged write.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { SQL } from "bun"
import { randomBytes } from "node:crypto"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { cloneDatabase, POSTGRES_ADMIN_URL, postgresUnreachable, type TestDatabase } from "../support/postgres.js"
import { eventually, expectProblem, withKey } from "../support/server.js"
import { startTcpProxy } from "../support/tcpProxy.js"
import { type Cluster, type Instance, startCluster } from "../support/instances.js"
import { expectEveryWriteKept, killOneUnderWriteLoad, measureRevocation, postMessage, racingIdempotentPosts } from "./checks.js"

const unreachable = await postgresUnreachable()
if (unreachable !== undefined) {
  if (process.env["CI"] === "true") throw new Error(`${unreachable}; CI needs it for the scale tests`)
  console.warn(`skipping the PostgreSQL scale tests: ${unreachable}`)
}
const describeOnPostgres = (name: string, body: () => void) => (unreachable === undefined ? describe(name, body) : describe.skip(name, body))

const connect = (url: string) => new SQL(url, { max: 1, connectionTimeout: 2 })

/** Few connections each: other runs share this PostgreSQL. */
const POOL = { BULWARK_DB_POOL_SIZE: "4" }
const LIMIT = 600

const newSession = async (via: Instance, key: string) => {
  const response = await via.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))
  expect(response.status).toBe(201)
  return ((await response.json()) as { id: string }).id
}

describeOnPostgres("three processes on one PostgreSQL and one Redis", () => {
  const redisAvailable = requireRedisServer()
  let database: TestDatabase
  let redis: OwnRedis | undefined
  let cluster: Cluster
  let instances: Array<Instance>
  let key: string

  beforeAll(async () => {
    database = await cloneDatabase()
    redis = redisAvailable ? await startOwnRedis() : undefined
    cluster = startCluster({ databaseUrl: database.url, ...(redis === undefined ? {} : { redisUrl: redis.url }), env: POOL })
    instances = await Promise.all(["a", "b", "c"].map((name) => cluster.start(name)))
    key = (await cluster.createTenant(instances[0]!)).api_key
  }, 60_000)
  afterAll(async () => {
    await cluster?.close()
    await redis?.stop()
    await database?.drop()
  }, 30_000)

  test("seq is 1..N with no gap or repeat under concurrent posts spread over the instances", async () => {
    const sessionId = await newSession(instances[0]!, key)
    const posts = Array.from({ length: 60 }, (_, i) => postMessage(instances[i % 3]!, key, sessionId, `m${i}`))
    const seqs = (await Promise.all(posts)).map((posted) => posted.seq).sort((x, y) => x - y)
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
    await expectEveryWriteKept(instances[2]!, key, sessionId, 60)
  }, 30_000)

  test("racing Idempotency-Key repeats on different instances all get the first result, and one message is written", async () => {
    await racingIdempotentPosts(instances, key, await newSession(instances[1]!, key), 10)
  }, 30_000)

  test("posts to several sessions through every instance at once (batches of several sessions racing): each session is 1..N", async () => {
    const sessions = await Promise.all(Array.from({ length: 4 }, () => newSession(instances[0]!, key)))
    // Each instance posts to the sessions in its own order, so their batches meet the sessions in different orders.
    const posts = Array.from({ length: 96 }, (_, i) => {
      const via = i % 3
      const session = via === 1 ? sessions[3 - (i % 4)]! : sessions[(i + via) % 4]!
      return postMessage(instances[via]!, key, session, `m${i}`).then((posted) => ({ session, posted }))
    })
    const done = await Promise.all(posts)
    for (const sessionId of sessions) {
      const seqs = done.filter((post) => post.session === sessionId).map((post) => post.posted.seq).sort((x, y) => x - y)
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1))
      await expectEveryWriteKept(instances[2]!, key, sessionId, seqs.length, done.filter((post) => post.session === sessionId).map((post) => post.posted))
    }
  }, 30_000)

  test("a key revoked or deleted through one instance is refused by every instance within 1 s", async () => {
    const delays = await measureRevocation(cluster, instances, "postgres, redis up")
    for (const delay of delays) expect(delay).toBeLessThan(1000)
  }, 30_000)

  test.skipIf(!redisAvailable)("while Redis is down, a revocation through one instance is refused by every instance within 1 s", async () => {
    await redis!.kill()
    try {
      const delays = await measureRevocation(cluster, instances, "postgres, redis killed")
      for (const delay of delays) expect(delay).toBeLessThan(1000)
    } finally {
      await redis!.start()
    }
  }, 30_000)

  test.skipIf(!redisAvailable)("an instance cut off from PostgreSQL stops trusting the keys it kept: it accepts a key revoked through another for less than 1 s", async () => {
    const upstream = new URL(database.url)
    const proxy = await startTcpProxy({ host: upstream.hostname, port: Number(upstream.port || "5432") })
    const through = new URL(database.url)
    through.hostname = proxy.host
    through.port = String(proxy.port)
    const cutOff = await cluster.start("p", { DATABASE_URL: through.toString() })
    try {
      const tenant = await cluster.createTenant(instances[0]!)
      const sessionId = await newSession(instances[0]!, tenant.api_key)
      // Served without PostgreSQL: the session from Redis, the key from the instance's memory.
      const read = () => cutOff.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))
      for (let warm = 0; warm < 3; warm++) expect((await read()).status).toBe(200)
      await proxy.cut()
      const revoked = await cluster.admin(instances[0]!, `/v1/admin/keys/${tenant.api_key_id}`, { method: "DELETE" })
      expect(revoked.status).toBe(204)
      const revokedAt = performance.now()
      let lastAcceptedSentAt = -1
      let refusals = 0
      while (performance.now() - revokedAt < 1500) {
        const sentAt = performance.now() - revokedAt
        const response = await read()
        if (response.status === 200) {
          lastAcceptedSentAt = sentAt
          await response.body?.cancel()
        } else {
          // It cannot check the key: refused with the database's 503, never let through.
          const problem = await expectProblem(response, 503, "DATABASE_UNAVAILABLE")
          expect(problem.retry_after_seconds).toBeGreaterThan(0)
          refusals++
        }
        await Bun.sleep(10)
      }
      console.log(`cut off from PostgreSQL: the revoked key was last accepted ${Math.round(lastAcceptedSentAt)} ms after the revocation; ${refusals} refusals with 503 afterwards`)
      expect(lastAcceptedSentAt).toBeLessThan(1000)
      expect(refusals).toBeGreaterThan(0)
      // Back in touch: the revocation is heard and the key refused as revoked.
      await proxy.heal()
      await eventually(async () => {
        const response = await read()
        if (response.status !== 401) {
          await response.body?.cancel()
          return undefined
        }
        return expectProblem(response, 401, "AUTH_REVOKED")
      }, 10_000)
    } finally {
      await cutOff.stop()
      await proxy.close()
    }
  }, 60_000)

  test("kill -9 of one instance under write load: every acknowledged write is kept and seq stays gapless", async () => {
    instances = await killOneUnderWriteLoad({ instances, cluster, key, sessionId: await newSession(instances[0]!, key) })
  }, 60_000)
})

describeOnPostgres("three processes on one PostgreSQL without Redis", () => {
  const name = `bulwark_test_${process.pid}_scale_${randomBytes(4).toString("hex")}`
  let url: string
  let cluster: Cluster
  let instances: Array<Instance>

  beforeAll(async () => {
    // An empty database: the three starts race to migrate it, and it is migrated once.
    const admin = connect(POSTGRES_ADMIN_URL)
    try {
      await admin.unsafe(`CREATE DATABASE "${name}"`)
    } finally {
      await admin.close({ timeout: 1 })
    }
    const target = new URL(POSTGRES_ADMIN_URL)
    target.pathname = `/${name}`
    url = target.toString()
    // An hour's window, so that the rate-limit test does not straddle two windows.
    cluster = startCluster({ databaseUrl: url, env: { ...POOL, BULWARK_RATE_LIMIT: `${LIMIT}/1h` } })
    instances = await Promise.all(["a", "b", "c"].map((instance) => cluster.start(instance)))
  }, 60_000)
  afterAll(async () => {
    await cluster?.close()
    const admin = connect(POSTGRES_ADMIN_URL)
    try {
      await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    } finally {
      await admin.close({ timeout: 1 })
    }
  }, 30_000)

  test("started together on an empty database, the instances applied each migration once", async () => {
    const db = connect(url)
    try {
      const rows = await db.unsafe("SELECT migration_id, count(*)::int AS n FROM effect_sql_migrations GROUP BY migration_id") as Array<{ n: number }>
      expect(rows.length).toBeGreaterThan(0)
      expect(rows.every((row) => row.n === 1)).toBe(true)
    } finally {
      await db.close({ timeout: 1 })
    }
  })

  test("a key's requests spread over the instances are counted in the database, and the limit holds on every instance", async () => {
    const { api_key } = await cluster.createTenant(instances[0]!)
    const statuses: Array<number> = []
    for (let i = 0; i < LIMIT; i++) {
      const response = await instances[i % 3]!.fetch("/v1/sessions?limit=1", withKey(api_key))
      statuses.push(response.status)
      await response.body?.cancel()
    }
    expect(statuses).toEqual(Array.from({ length: LIMIT }, () => 200))
    for (const via of instances) {
      const problem = await expectProblem(await via.fetch("/v1/sessions?limit=1", withKey(api_key)), 429, "RATE_LIMITED")
      expect(problem.retry_after_seconds).toBeGreaterThan(0)
    }
  }, 30_000)

  test("a key revoked or deleted through one instance is refused by every instance within 1 s (the change generation)", async () => {
    const delays = await measureRevocation(cluster, instances, "postgres, no redis")
    for (const delay of delays) expect(delay).toBeLessThan(1000)
  }, 30_000)

  test("racing Idempotency-Key repeats on different instances all get the first result", async () => {
    const { api_key } = await cluster.createTenant(instances[0]!)
    await racingIdempotentPosts(instances, api_key, await newSession(instances[2]!, api_key), 5)
  }, 30_000)
})
