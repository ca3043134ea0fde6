/**
 * A storm of event-stream opens does not stall other requests (issue: 10,000 streams over 1,000
 * sessions "do not slow other requests"). The server is a process of its own, as deployed: opens
 * answered on the spot kept Bun accepting the storm's new connections without reading the sockets
 * it already had, so a request on a kept-alive connection waited until the storm was over. Opens
 * are now admitted a few per turn of the event loop, and the kept-alive connection is served
 * between them.
 */
import { afterAll, expect, test } from "bun:test"
import type { Socket } from "bun"
import { cloneDatabase, harness, type TestDatabase } from "../support/postgres.js"
import { type Instance, startCluster } from "../support/instances.js"
import { withKey } from "../support/server.js"

const STREAMS = 1500
const CONCURRENCY = 100
const SESSIONS = 20

let database: TestDatabase | undefined
afterAll(() => database?.drop())

/** One connection kept alive, asking `GET /health/live` again as soon as each answer is complete; `answeredAt` holds when each came. */
const keptAlive = async (url: URL) => {
  const answeredAt: Array<number> = []
  let buffer = ""
  let stopped = false
  const ask = (socket: Socket) => void socket.write(`GET /health/live HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`)
  const socket = await Bun.connect({
    hostname: url.hostname,
    port: Number(url.port),
    socket: {
      data: (socket, data) => {
        buffer += data.toString("latin1")
        const headEnd = buffer.indexOf("\r\n\r\n")
        const length = /content-length: (\d+)/i.exec(buffer)
        if (headEnd < 0 || length === null || buffer.length - headEnd - 4 < Number(length[1])) return
        buffer = ""
        answeredAt.push(performance.now())
        if (!stopped) ask(socket)
      }
    }
  })
  ask(socket)
  return {
    answeredAt,
    stop: () => {
      stopped = true
      socket.end()
    }
  }
}

/** Opens a stream on a raw socket; resolves once its 200 has arrived. */
const openStream = (url: URL, path: string, key: string, into: Array<Socket>) =>
  new Promise<void>((resolve, reject) => {
    let answered = false
    void Bun.connect({
      hostname: url.hostname,
      port: Number(url.port),
      socket: {
        open: (socket) => {
          into.push(socket)
          socket.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\n\r\n`)
        },
        data: (_socket, data) => {
          if (answered) return
          answered = true
          const text = data.toString("latin1")
          if (text.startsWith("HTTP/1.1 200")) resolve()
          else reject(new Error(`a stream answered ${text.slice(0, 300)}`))
        },
        connectError: (_socket, error) => reject(error)
      }
    }).catch(reject)
  })

test(`requests on a kept-alive connection are answered while ${STREAMS} event streams open`, { timeout: 180_000 }, async () => {
  if (harness.dialect === "postgres") database = await cloneDatabase()
  const cluster = startCluster({
    ...(database === undefined ? {} : { databaseUrl: database.url }),
    env: { BULWARK_MAX_STREAMS_PER_KEY: String(STREAMS), BULWARK_DB_POOL_SIZE: "4" }
  })
  const streams: Array<Socket> = []
  try {
    const instance: Instance = await cluster.start("storm")
    const { api_key: key } = await cluster.createTenant(instance)
    const sessions: Array<string> = []
    for (let i = 0; i < SESSIONS; i++) {
      const response = await instance.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))
      expect(response.status).toBe(201)
      sessions.push(((await response.json()) as { id: string }).id)
    }
    const url = new URL(instance.url)
    const probe = await keptAlive(url)

    // The window between a tenth and nine tenths of the opens: the storm at full strength.
    let opened = 0
    let from = Number.POSITIVE_INFINITY
    let to = Number.POSITIVE_INFINITY
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < STREAMS) {
        const index = next++
        await openStream(url, `/v1/sessions/${sessions[index % SESSIONS]}/events`, key, streams)
        opened += 1
        if (opened === Math.floor(STREAMS / 10)) from = performance.now()
        if (opened === Math.floor((STREAMS * 9) / 10)) to = performance.now()
      }
    }))
    probe.stop()
    const during = probe.answeredAt.filter((at) => at > from && at < to).length
    // Stalled, it gets none until the storm is over; served between batches of opens, many.
    expect(during).toBeGreaterThanOrEqual(3)
  } finally {
    for (const socket of streams) socket.end()
    await cluster.close()
  }
})
