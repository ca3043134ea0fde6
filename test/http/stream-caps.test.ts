/** Caps on open event streams (SPEC §1): per key 429, per process 503, each with Retry-After; a slot comes back when its stream ends. */
import { describe, expect, test } from "bun:test"
import { eventually, expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { openEvents, type SseClient } from "../support/sse.js"
import { connect, listenRequest } from "../mcp/client.js"

const newSession = async (server: TestServer, key: string) =>
  ((await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json()) as { id: string }).id

const subscribe = async (server: TestServer, key: string, sessionId: string): Promise<SseClient> => {
  const client = await openEvents(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
  // Answered 200: the handler took the stream's slot before it answered.
  expect(client.response.status).toBe(200)
  return client
}

/** Open streams as `/health` details count them. */
/** A slot freed is a stream that opens again (200) within the bound `eventually` allows. */
const opensAgain = async (server: TestServer, key: string, sessionId: string) => {
  const reopened = await eventually(async () => {
    const response = await fetch(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
    if (response.status === 200) return response
    await response.body?.cancel()
    return undefined
  })
  await reopened.body?.cancel()
}

const streamsOpen = async (server: TestServer) => ((await (await server.admin("/health")).json()) as { streams: { open: number } }).streams.open

const metric = async (server: TestServer, pattern: RegExp) => Number(pattern.exec(await (await server.admin("/metrics")).text())?.[1] ?? "NaN")

describe("caps on open event streams", () => {
  test("past the per-key cap 429 RATE_LIMITED with Retry-After; the key's other requests and other keys still work; closing one frees its slot", { timeout: 20_000 }, async () => {
    const server = await startServer({ streamCaps: { perKey: 2, total: 100 } })
    const clients: Array<SseClient> = []
    try {
      const key = (await server.createTenant()).api_key
      const other = (await server.createTenant()).api_key
      const sessionId = await newSession(server, key)
      clients.push(await subscribe(server, key, sessionId), await subscribe(server, key, sessionId))

      const refused = await server.fetch(`/v1/sessions/${sessionId}/events`, withKey(key))
      const problem = await expectProblem(refused, 429, "RATE_LIMITED")
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect(refused.headers.get("retry-after")).toBe(String(problem.retry_after_seconds))

      // The capped key's other requests still work, and another key has slots of its own.
      expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key))).status).toBe(200)
      expect((await server.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key))).status).toBe(200)
      clients.push(await subscribe(server, other, await newSession(server, other)))

      // Operators see the caps and the count in /health details.
      const health = (await (await server.admin("/health")).json()) as { streams?: unknown }
      expect(health.streams).toEqual({ open: 3, per_key_cap: 2, process_cap: 100 })
      expect(await metric(server, /^bulwark_event_stream_cap\{scope="key"\} (\d+)$/m)).toBe(2)
      expect(await metric(server, /^bulwark_event_stream_cap\{scope="process"\} (\d+)$/m)).toBe(100)

      // A stream that ends gives its slot back.
      clients.shift()?.close()
      await opensAgain(server, key, sessionId)
    } finally {
      for (const client of clients) client.close()
      await server.close()
    }
  })

  test("past the process cap 503 OVERLOADED with Retry-After, whatever the key", { timeout: 20_000 }, async () => {
    const server = await startServer({ streamCaps: { perKey: 10, total: 2 } })
    const clients: Array<SseClient> = []
    try {
      const first = (await server.createTenant()).api_key
      const second = (await server.createTenant()).api_key
      clients.push(await subscribe(server, first, await newSession(server, first)))
      const secondSession = await newSession(server, second)
      clients.push(await subscribe(server, second, secondSession))

      const refused = await server.fetch(`/v1/sessions/${secondSession}/events`, withKey(second))
      const problem = await expectProblem(refused, 503, "OVERLOADED")
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect(refused.headers.get("retry-after")).toBe(String(problem.retry_after_seconds))
      // Only streams are capped.
      expect((await server.fetch(`/v1/sessions/${secondSession}`, withKey(second))).status).toBe(200)
    } finally {
      for (const client of clients) client.close()
      await server.close()
    }
  })
  test("a stream whose body is never read (a HEAD, a client gone before reading) gives its slot back", { timeout: 20_000 }, async () => {
    const server = await startServer({ streamCaps: { perKey: 1, total: 100 } })
    try {
      const key = (await server.createTenant()).api_key
      const sessionId = await newSession(server, key)
      const head = await fetch(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key, { method: "HEAD" }))
      expect(head.status).toBe(200)
      // Each slot comes back once the server has seen its stream end, which can be a moment after the
      // client moved on: the next open is retried within `eventually`'s bound rather than raced.
      // A client that leaves without reading past the headers.
      const unread = await eventually(async () => {
        const response = await fetch(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
        if (response.status === 200) return response
        await response.body?.cancel()
        return undefined
      })
      await unread.body?.cancel()
      await opensAgain(server, key, sessionId)

      // A client whose connection just drops, with no close of the stream on its side.
      const url = new URL(server.url)
      const rawOpen = () =>
        new Promise<import("bun").Socket | undefined>((resolve, reject) => {
          void Bun.connect({
            hostname: url.hostname,
            port: Number(url.port),
            socket: {
              open: (socket) => void socket.write(`GET /v1/sessions/${sessionId}/events HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\n\r\n`),
              data: (socket, data) => {
                const head = data.toString("latin1")
                if (head.startsWith("HTTP/1.1 200")) return resolve(socket)
                socket.end()
                if (head.startsWith("HTTP/1.1 429")) return resolve(undefined)
                reject(new Error(head))
              },
              connectError: (_socket, error) => reject(error)
            }
          }).catch(reject)
        })
      const dropped = await eventually(rawOpen)
      expect(await streamsOpen(server)).toBe(1)
      dropped.terminate()
      await eventually(async () => ((await streamsOpen(server)) === 0 ? true : undefined))
    } finally {
      await server.close()
    }
  })
  test("MCP listen streams count against the same caps: past the key's, listen is 429 RATE_LIMITED; closing it frees the slot", { timeout: 20_000 }, async () => {
    const server = await startServer({ streamCaps: { perKey: 1, total: 100 } })
    const clients: Array<SseClient> = []
    try {
      const key = (await server.createTenant()).api_key
      const sessionId = await newSession(server, key)
      const listen = () =>
        openEvents(`${server.url}/mcp`, listenRequest(key, 7, { resourceSubscriptions: [`bulwark://sessions/${sessionId}/messages`] }))
      const listening = await listen()
      clients.push(listening)
      expect(listening.response.status).toBe(200)
      expect((await listening.nextEvent(3000)).data).toContain("notifications/subscriptions/acknowledged")

      // The key's one slot is the listen stream's: neither an SSE stream nor another listen gets one.
      await expectProblem(await server.fetch(`/v1/sessions/${sessionId}/events`, withKey(key)), 429, "RATE_LIMITED")
      const second = await listen()
      clients.push(second)
      expect(second.response.status).toBe(429)
      expect(Number(second.response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      // The key's other requests still work.
      expect((await server.fetch(`/v1/sessions/${sessionId}`, withKey(key))).status).toBe(200)

      listening.close()
      await opensAgain(server, key, sessionId)
    } finally {
      for (const client of clients) client.close()
      await server.close()
    }
  })
  test("the MCP session era's GET stream takes a slot too, and gives it back when the client closes", { timeout: 20_000 }, async () => {
    const server = await startServer({ streamCaps: { perKey: 1, total: 100 } })
    try {
      const key = (await server.createTenant()).api_key
      const sessionId = await newSession(server, key)
      const status = async () => {
        const response = await fetch(`${server.url}/v1/sessions/${sessionId}/events`, withKey(key))
        await response.body?.cancel()
        return response.status
      }
      // The SDK client opens its GET stream once the session is initialized.
      const { client } = await connect(server, key)
      await eventually(async () => ((await status()) === 429 ? true : undefined))
      await client.close()
      await eventually(async () => ((await status()) === 200 ? true : undefined))
    } finally {
      await server.close()
    }
  })
})
