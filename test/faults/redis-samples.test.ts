/**
 * What Bulwark logs of a foreign text it could not use (a cache entry that did not decode, a
 * message on the event channel that did not decode) passes the sanitiser first: no credential in
 * it reaches a log line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { LogLevel } from "effect"
import { eventually, startServer, type TestServer, withKey } from "../support/server.js"
import { type OwnRedis, requireRedisServer, startOwnRedis } from "../support/redis.js"
import { captureLogLines } from "../support/logLines.js"

const available = requireRedisServer()

const API_KEY = `bk_${"Q".repeat(43)}`
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrMSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
const SECRETS = ["hunter2", API_KEY, JWT, "s3cr3t-value", "opaque-bearer-credential"]

/** JSON with secrets under secret-looking keys and in free text, padded so that the sample is cut. */
const jsonGarbage = JSON.stringify({
  id: 42,
  password: "hunter2",
  nested: { client_secret: "s3cr3t-value", note: `key ${API_KEY} and token ${JWT}` },
  header: "Bearer opaque-bearer-credential",
  padding: "x".repeat(500)
})
/** Not JSON at all, with a credential straddling the 200th character. */
const textGarbage = `${"y".repeat(180)} password=hunter2 ${API_KEY} Bearer opaque-bearer-credential ${JWT} client_secret=s3cr3t-value`

describe.skipIf(!available)("logged samples are sanitised", () => {
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

  const linesWith = (text: string) => lines.filter((line) => line.includes(text))
  const expectClean = (line: string) => {
    for (const secret of SECRETS) expect(line).not.toContain(secret)
  }

  test("a cached value that did not decode is logged with a sanitised sample", async () => {
    const tenant = await server.createTenant()
    const created = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ title: "sampled" }) }))
    const sessionId = ((await created.json()) as { id: string }).id
    for (const garbage of [jsonGarbage, textGarbage]) {
      const before = linesWith("a cached value did not decode").length
      await redis.cli("SET", `session:${tenant.id}:${sessionId}`, garbage)
      const read = await server.fetch(`/v1/sessions/${sessionId}`, withKey(tenant.api_key))
      expect(read.status).toBe(200)
      expect(await read.json()).toMatchObject({ id: sessionId, title: "sampled" })
      const logged = await eventually(async () => linesWith("a cached value did not decode")[before])
      expect(logged).toContain("[Filtered]")
      expectClean(logged)
    }
  }, 30_000)

  test("an event on the session channel that did not decode is logged with a sanitised sample", async () => {
    // The subscription connects in the background; publish until it has heard one.
    const logged = await eventually(async () => {
      await redis.cli("PUBLISH", "bulwark:session-events", textGarbage)
      return linesWith("an event on the session channel did not decode")[0]
    }, 5000)
    expect(logged).toContain("[Filtered]")
    expectClean(logged)
  }, 30_000)
})
