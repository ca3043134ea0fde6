/** `/health` with dependency details, and operators setting breakers over HTTP and the CLI. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { join } from "node:path"
import { expectProblem, startServer, type TestServer } from "../support/server.js"

let server: TestServer

beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.close())

const setBreaker = (dependency: string, action: string) =>
  server.admin(`/v1/admin/breakers/${dependency}`, { method: "POST", body: JSON.stringify({ action }) })

describe("/health", () => {
  test("anonymous callers get the status only; the admin token gets the details", async () => {
    const anonymous = await server.fetch("/health")
    expect(anonymous.status).toBe(200)
    expect(await anonymous.json()).toEqual({ status: "ok" })

    const detailed = (await (await server.admin("/health")).json()) as {
      status: string
      dependencies: Record<string, { status: string; breaker: string; latency_ms: number | null; kind?: string }>
      errors: { recent_count: number; unresolved_count: number }
    }
    expect(detailed.status).toBe("ok")
    expect(detailed.dependencies.database).toMatchObject({ status: "ok", breaker: "closed" })
    expect(detailed.dependencies.database!.latency_ms).toBeGreaterThanOrEqual(0)
    expect(detailed.dependencies.cache).toMatchObject({ status: "ok", breaker: "closed", kind: "memory" })
    expect(detailed.errors.recent_count).toBeGreaterThanOrEqual(0)

    // A wrong token is treated as no token: status only, never a 401 from a health probe.
    expect(await (await server.fetch("/health", { headers: { authorization: "Bearer wrong" } })).json()).toEqual({ status: "ok" })
  })

  test("a cache breaker forced open is degraded (200); a database breaker forced open is unhealthy (503 problem with the report)", async () => {
    expect((await setBreaker("cache", "open")).status).toBe(200)
    const degraded = await server.admin("/health")
    expect(degraded.status).toBe(200)
    expect(await degraded.json()).toMatchObject({ status: "degraded", dependencies: { cache: { breaker: "forced_open" } } })
    expect((await setBreaker("cache", "close")).status).toBe(200)

    expect((await setBreaker("database", "open")).status).toBe(200)
    try {
      const unhealthy = await expectProblem(await server.admin("/health"), 503, "DATABASE_UNAVAILABLE")
      expect(unhealthy).toMatchObject({
        status: 503,
        health: { status: "unhealthy", dependencies: { database: { status: "down", breaker: "forced_open" } }, errors: null }
      })
      const anonymous = await expectProblem(await server.fetch("/health"), 503, "DATABASE_UNAVAILABLE")
      expect(anonymous).toMatchObject({ health: { status: "unhealthy" } })
      expect("dependencies" in (anonymous as unknown as { health: object }).health).toBe(false)
      await expectProblem(await server.fetch("/health/ready"), 503, "DATABASE_UNAVAILABLE")
    } finally {
      expect((await setBreaker("database", "close")).status).toBe(200)
    }
    expect(await (await server.fetch("/health")).json()).toEqual({ status: "ok" })
  })

  test("breaker statuses are listed; a disabled breaker lets calls through untracked", async () => {
    const listed = (await (await server.admin("/v1/admin/breakers")).json()) as { data: Array<{ dependency: string; state: string }> }
    expect(listed.data.map((entry) => entry.dependency).sort()).toEqual(["cache", "database", "memory"])
    const disabled = (await (await setBreaker("database", "disable")).json()) as { state: string }
    expect(disabled.state).toBe("disabled")
    expect((await server.fetch("/health/ready")).status).toBe(200)
    await setBreaker("database", "close")
    await expectProblem(await setBreaker("queue", "open"), 400, "VALIDATION_FAILED")
  })
})

describe("bun run cli -- breaker", () => {
  test("reads and sets a breaker of the running server", async () => {
    const entry = join(import.meta.dir, "..", "..", "src", "cli", "main.ts")
    const run = async (...args: Array<string>) => {
      const child = Bun.spawn(["bun", entry, ...args], {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "",
          BULWARK_URL: server.url,
          BULWARK_ADMIN_TOKEN: server.adminToken,
          DATABASE_URL: server.databaseUrl
        },
        stdout: "pipe",
        stderr: "pipe"
      })
      const exitCode = await child.exited
      return { exitCode, stdout: await new Response(child.stdout).text(), stderr: await new Response(child.stderr).text() }
    }
    const opened = await run("breaker", "cache", "open")
    expect(opened.exitCode).toBe(0)
    expect(JSON.parse(opened.stdout)).toMatchObject({ dependency: "cache", state: "forced_open" })
    const status = await run("breaker", "cache", "status")
    expect(JSON.parse(status.stdout)).toMatchObject({ dependency: "cache", state: "forced_open" })
    expect((await server.admin("/health")).status).toBe(200)
    expect(JSON.parse((await run("breaker", "cache", "close")).stdout)).toMatchObject({ state: "closed" })
    const bad = await run("breaker", "queue", "open")
    expect(bad.exitCode).toBe(1)
    // Four process starts: a busy machine can take seconds over them.
  }, 60_000)
})
