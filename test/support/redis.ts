/**
 * A Redis server of the test's own, on a free loopback port, that the test may kill, pause or
 * restart: the shared Redis on 6379 is never touched. Without `redis-server` on the machine the
 * caller skips with a printed reason, except under `CI=true`, where that is a failure.
 */
import { Subprocess } from "bun"

export const redisServerPath = Bun.which("redis-server")

export const requireRedisServer = (): boolean => {
  if (redisServerPath !== null) return true
  if (process.env.CI === "true") throw new Error("redis-server is not installed, and CI must not skip the Redis fault tests")
  console.warn("skipping the Redis fault tests: redis-server is not installed")
  return false
}

const freePort = (): number => {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() })
  const port = probe.port!
  probe.stop(true)
  return port
}

export interface OwnRedis {
  readonly port: number
  readonly url: string
  readonly cli: (...args: Array<string>) => Promise<string>
  readonly kill: () => Promise<void>
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** `started: false` reserves the port and leaves the server down until `start()` (a Redis that comes late). */
export const startOwnRedis = async (options: { readonly started?: boolean } = {}): Promise<OwnRedis> => {
  const port = freePort()
  let process_: Subprocess | undefined
  const cli = async (...args: Array<string>) => {
    const child = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], { stdout: "pipe", stderr: "pipe" })
    await child.exited
    return (await new Response(child.stdout).text()).trim()
  }
  const start = async () => {
    process_ = Bun.spawn(
      [redisServerPath!, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
      { stdout: "ignore", stderr: "ignore" }
    )
    for (let i = 0; i < 200; i++) {
      if ((await cli("PING")) === "PONG") return
      await Bun.sleep(10)
    }
    throw new Error(`redis-server did not start on port ${port}`)
  }
  const kill = async () => {
    process_?.kill("SIGKILL")
    await process_?.exited
  }
  if (options.started !== false) await start()
  return { port, url: `redis://127.0.0.1:${port}`, cli, kill, start, stop: kill }
}
