/**
 * One rate limit across three separate processes sharing one Redis (SPEC §8): a key's requests are
 * counted together whichever instance they reach, and the one past the limit is 429 on any of them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { expectProblem, withKey } from "../support/server.js"
import { type Cluster, type Instance, startCluster } from "../support/instances.js"

const available = requireRedisServer()
const LIMIT = 30

describe.skipIf(!available)("a rate limit shared by three processes through Redis", () => {
  let redis: OwnRedis
  let cluster: Cluster
  let instances: Array<Instance>

  beforeAll(async () => {
    redis = await startOwnRedis()
    // An hour's window, so that the test does not straddle two windows.
    cluster = startCluster({ redisUrl: redis.url, env: { BULWARK_RATE_LIMIT: `${LIMIT}/1h` } })
    // One after another: what is tested is the shared count, not a start under load (whose first
    // Redis connection may take longer than the client's connect timeout).
    instances = []
    for (const name of ["a", "b", "c"]) instances.push(await cluster.start(name))
  }, 60_000)
  afterAll(async () => {
    await cluster?.close()
    await redis?.stop()
  }, 30_000)

  test("a key's requests spread over the instances are counted once, and the limit holds on every instance", async () => {
    const { api_key } = await cluster.createTenant(instances[0]!)
    const statuses: Array<number> = []
    for (let i = 0; i < LIMIT; i++) {
      const response = await instances[i % 3]!.fetch("/v1/sessions?limit=1", withKey(api_key))
      statuses.push(response.status)
      expect(response.headers.get("ratelimit-remaining")).toBe(String(LIMIT - i - 1))
      await response.body?.cancel()
    }
    expect(statuses).toEqual(Array.from({ length: LIMIT }, () => 200))
    for (const via of instances) {
      const problem = await expectProblem(await via.fetch("/v1/sessions?limit=1", withKey(api_key)), 429, "RATE_LIMITED")
      expect(problem.retry_after_seconds).toBeGreaterThan(0)
    }
  }, 30_000)
})
