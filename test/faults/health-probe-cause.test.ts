/** A failed health probe says why in the log (SPEC §5): `/health` answers "down", the log line names the cause. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { LogLevel } from "effect"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { captureLogLines } from "../support/logLines.js"
import { eventually, startServer, type TestServer } from "../support/server.js"

const available = requireRedisServer()

describe.skipIf(!available)("health probe causes", () => {
  let redis: OwnRedis
  let server: TestServer
  const lines: Array<string> = []
  let restoreLog = () => {}

  beforeAll(async () => {
    restoreLog = captureLogLines(lines)
    redis = await startOwnRedis()
    server = await startServer({ redisUrl: redis.url, logLevel: LogLevel.Warning })
  }, 30_000)
  afterAll(async () => {
    restoreLog()
    await server.close()
    await redis.stop()
  }, 30_000)

  test("with Redis killed, /health reports the cache down and the log line carries the probe's code and cause", async () => {
    await redis.kill()
    const response = await server.admin("/health")
    const report = (await response.json()) as { dependencies: { cache: { status: string } } }
    expect(report.dependencies.cache.status).toBe("down")
    // Log lines are written when the event-loop turn that logged them ends.
    const line = await eventually(async () => lines.find((entry) => entry.includes("health probe of the cache failed")))
    const parsed = JSON.parse(line) as { logLevel: string; annotations: { dependency: string; code: string; cause: string } }
    expect(parsed.logLevel).toBe("WARN")
    expect(parsed.annotations.dependency).toBe("cache")
    expect(parsed.annotations.code).toBe("CACHE_UNAVAILABLE")
    expect(parsed.annotations.cause.length).toBeGreaterThan(0)
  }, 30_000)
})
