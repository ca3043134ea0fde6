/**
 * The fault tools the PostgreSQL fault tests rely on, checked with a plain client: a private cluster
 * that stops and starts on the same port with its data, and a proxy that cuts, refuses, stalls and heals.
 * If these did not do what they say, a fault test could pass without any fault having happened.
 */
import { SQL } from "bun"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type OwnPostgres, requirePostgresServer, startOwnPostgres } from "../support/ownPostgres.js"
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js"

const available = requirePostgresServer("the PostgreSQL fault-tool tests")

describe.skipIf(!available)("PostgreSQL fault tools", () => {
  let postgres: OwnPostgres
  let proxy: TcpProxy

  beforeAll(async () => {
    postgres = await startOwnPostgres()
    proxy = await startTcpProxy({ host: postgres.host, port: postgres.port })
  }, 60_000)
  afterAll(async () => {
    await proxy?.close()
    await postgres?.close()
  }, 30_000)

  const throughProxy = () => new SQL({ url: `postgres://postgres@127.0.0.1:${proxy.port}/postgres`, max: 1, idleTimeout: 1 })

  test("a private cluster keeps its data across a crash and a restart on the same port", async () => {
    await postgres.query("CREATE TABLE kept (id int PRIMARY KEY)")
    await postgres.query("INSERT INTO kept VALUES (1)")
    await postgres.query("CHECKPOINT")
    await postgres.stop("immediate")
    const refused = await postgres.query("SELECT 1").then(() => null, (error: unknown) => error)
    expect(refused).toBeInstanceOf(Error)
    await postgres.start()
    expect(await postgres.query<{ id: number }>("SELECT id FROM kept")).toEqual([{ id: 1 }])
  }, 30_000)

  test("the proxy forwards, cuts every connection, refuses while cut, and heals on the same port", async () => {
    const sql = throughProxy()
    try {
      expect(await sql`SELECT 41 + 1 AS answer`).toEqual([{ answer: 42 }])
      expect(proxy.openConnections()).toBe(1)
      await proxy.cut()
      expect(proxy.openConnections()).toBe(0)
      const failure = await sql`SELECT 1`.then(() => null, (error: unknown) => error)
      expect(failure).toBeInstanceOf(Error)
      const refused = await Bun.connect({ hostname: "127.0.0.1", port: proxy.port, socket: { data() {} } }).then(
        (socket) => {
          socket.terminate()
          return null
        },
        (error: { code?: string }) => error.code
      )
      expect(refused).toBe("ECONNREFUSED")
      await proxy.heal()
      expect(await sql`SELECT 2 AS two`).toEqual([{ two: 2 }])
    } finally {
      await sql.close()
    }
  })

  test("a stalled proxy holds a query until it heals, then delivers it", async () => {
    const sql = throughProxy()
    try {
      expect(await sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
      await proxy.stall()
      let answered = false
      const pending = sql`SELECT 3 AS three`.then((rows) => {
        answered = true
        return rows
      })
      await Bun.sleep(200)
      expect(answered).toBe(false)
      await proxy.heal()
      expect(await pending).toEqual([{ three: 3 }])
    } finally {
      await sql.close()
    }
  })
})
