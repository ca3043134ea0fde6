/**
 * Kept API keys (SPEC §8) through HTTP: this process's own writes (message posts) leave the key it
 * read trusted, so a post does not read it again; a change to the key, made here or by another
 * connection, is refused from the next request on.
 */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { attribute, type Receiver, startReceiver } from "../support/otlp.js"
import { sqliteOnly } from "../support/postgres.js"
import { eventually, expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

let receiver: Receiver
let server: TestServer

beforeAll(async () => {
  receiver = startReceiver()
  server = await startServer({ otlpEndpoint: receiver.url })
})
afterAll(async () => {
  await server.close()
  receiver.stop()
})

const newSession = async (apiKey: string) => {
  const response = await server.fetch("/v1/sessions", withKey(apiKey, { method: "POST", body: "{}" }))
  expect(response.status).toBe(201)
  return ((await response.json()) as { id: string }).id
}

const post = (apiKey: string, sessionId: string, content: string) =>
  server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(apiKey, { method: "POST", body: JSON.stringify({ agent_id: "a", content }) }))

describe("kept API keys", () => {
  test("message posts, one by one and together, do not read the caller's key from the database again", async () => {
    const owner = await server.createTenant()
    const sessionId = await newSession(owner.api_key)
    const responses = [
      ...(await Promise.all(Array.from({ length: 8 }, (_, i) => post(owner.api_key, sessionId, `together ${i}`))))
    ]
    for (let i = 0; i < 8; i++) responses.push(await post(owner.api_key, sessionId, `alone ${i}`))
    expect(responses.map((response) => response.status)).toEqual(Array(16).fill(201))
    const traces = new Set(responses.map((response) => response.headers.get("x-trace-id")!))
    // Every post's server span has arrived, so any key lookup of theirs has too.
    await eventually(async () => {
      const served = receiver.spans().filter((span) => span.kind === 2 && traces.has(span.traceId))
      return served.length === traces.size ? served : undefined
    }, 5000)
    const keyLookups = receiver.spans().filter((span) => span.name === "db.api_keys.find_by_hash" && traces.has(span.traceId))
    expect(keyLookups).toEqual([])
    // The posts did write, in their sessions' order: the spans are there to be seen.
    expect(receiver.spans().some((span) => span.name === "GroupCommit.messages.append" && (attribute(span, "bulwark.batch.size") as number) >= 1)).toBe(true)
  })

  test("a key revoked through this process is refused from the next request on, right after the key's own posts", async () => {
    const owner = await server.createTenant()
    const sessionId = await newSession(owner.api_key)
    expect((await post(owner.api_key, sessionId, "before")).status).toBe(201)
    expect((await server.admin(`/v1/admin/keys/${owner.api_key_id}`, { method: "DELETE" })).status).toBe(204)
    await expectProblem(await post(owner.api_key, sessionId, "after"), 401, "AUTH_REVOKED")
  })

  sqliteOnly("revokes through a second SQLite connection, by hand, without the change generation")(
    "a key revoked by hand through another connection is refused from the next request on, while this process keeps posting",
    async () => {
      const owner = await server.createTenant()
      const other = await server.createTenant()
      const sessionId = await newSession(owner.api_key)
      const otherSession = await newSession(other.api_key)
      const connection = new Database(server.databaseFile)
      try {
        expect((await post(owner.api_key, sessionId, "before")).status).toBe(201)
        // Another tenant keeps this process committing while the change lands.
        const busy = Promise.all(Array.from({ length: 8 }, (_, i) => post(other.api_key, otherSession, `busy ${i}`)))
        connection.run("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [new Date().toISOString(), owner.api_key_id])
        expect((await busy).map((response) => response.status)).toEqual(Array(8).fill(201))
        await expectProblem(await post(owner.api_key, sessionId, "after"), 401, "AUTH_REVOKED")
        expect((await post(other.api_key, otherSession, "still fine")).status).toBe(201)
      } finally {
        connection.close()
      }
    }
  )
})
