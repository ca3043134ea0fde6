/**
 * Starting on PostgreSQL, as a user would (real processes): the shared secrets come from the
 * environment or `*_FILE` and are required; the pool size is checked; an unreachable server stops
 * the start after a few seconds of retries; instances starting together migrate exactly once.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { cloneDatabase, connect, describeOnPostgres, POSTGRES_ADMIN_URL, type TestDatabase } from "./support/postgres.js"

const root = join(import.meta.dir, "..")
const ADMIN_TOKEN = "a".repeat(24) + crypto.randomUUID()
const JWT_SECRET = "j".repeat(24) + crypto.randomUUID()

let clone: TestDatabase
let directory: string

const spawn = (args: Array<string>, env: Record<string, string>) =>
  Bun.spawn(["bun", ...args], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", LOG_LEVEL: "info", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })

const failedStart = async (env: Record<string, string>) => {
  const child = spawn([join(root, "src", "main.ts")], env)
  const exitCode = await child.exited
  return { exitCode, stderr: (await new Response(child.stderr).text()).trim() }
}

await describeOnPostgres("starting on PostgreSQL", () => {
  beforeAll(async () => {
    clone = await cloneDatabase()
    directory = mkdtempSync(join(tmpdir(), "bulwark-pg-config-"))
  })
  afterAll(async () => {
    await clone.drop()
    rmSync(directory, { recursive: true, force: true })
  })

  const onClone = () => ({ DATABASE_URL: clone.url })

  test("without the admin token, or without the JWT secret, the start stops with one line naming the variable", async () => {
    for (const [env, variable] of [
      [{ BULWARK_JWT_SECRET: JWT_SECRET }, "BULWARK_ADMIN_TOKEN"],
      [{ BULWARK_ADMIN_TOKEN: ADMIN_TOKEN }, "BULWARK_JWT_SECRET"]
    ] as const) {
      const { exitCode, stderr } = await failedStart({ ...onClone(), ...env })
      expect(exitCode).toBe(1)
      expect(stderr.split("\n")).toHaveLength(1)
      expect(stderr).toContain(variable)
      expect(stderr).toContain(`${variable}_FILE`)
    }
  }, 30_000)

  test("secrets from *_FILE serve: the admin token read from its file opens /health's details", async () => {
    const tokenFile = join(directory, "admin-token")
    const secretFile = join(directory, "jwt-secret")
    writeFileSync(tokenFile, ADMIN_TOKEN + "\n")
    writeFileSync(secretFile, JWT_SECRET + "\n")
    chmodSync(tokenFile, 0o600)
    const child = spawn([join(root, "src", "main.ts")], { ...onClone(), BULWARK_ADMIN_TOKEN_FILE: tokenFile, BULWARK_JWT_SECRET_FILE: secretFile })
    try {
      const reader = child.stdout.getReader()
      let output = ""
      let port: string | undefined
      while (port === undefined) {
        const { done, value } = await reader.read()
        if (done) throw new Error(`server exited before listening: ${output}${await new Response(child.stderr).text()}`)
        output += new TextDecoder().decode(value)
        port = /Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]
      }
      expect((await fetch(`http://127.0.0.1:${port}/health/ready`)).status).toBe(200)
      const health = await fetch(`http://127.0.0.1:${port}/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      expect(health.status).toBe(200)
      expect(await health.json()).toMatchObject({ status: "ok", dependencies: { database: { status: "ok", breaker: "closed" } } })
      expect(output).not.toContain(ADMIN_TOKEN)
      child.kill("SIGTERM")
      expect(await child.exited).toBe(0)
    } finally {
      child.kill("SIGKILL")
    }
  }, 30_000)

  test("a secret file that cannot be read, both forms at once, or a bad pool size stop the start naming the variable", async () => {
    const secrets = { BULWARK_JWT_SECRET: JWT_SECRET }
    for (const [env, variable] of [
      [{ ...secrets, BULWARK_ADMIN_TOKEN_FILE: join(directory, "missing") }, "BULWARK_ADMIN_TOKEN_FILE"],
      [{ ...secrets, BULWARK_ADMIN_TOKEN: ADMIN_TOKEN, BULWARK_ADMIN_TOKEN_FILE: join(directory, "admin-token") }, "BULWARK_ADMIN_TOKEN"],
      [{ ...secrets, BULWARK_ADMIN_TOKEN: ADMIN_TOKEN, BULWARK_DB_POOL_SIZE: "0" }, "BULWARK_DB_POOL_SIZE"],
      [{ ...secrets, BULWARK_ADMIN_TOKEN: ADMIN_TOKEN, BULWARK_DB_POOL_SIZE: "ten" }, "BULWARK_DB_POOL_SIZE"]
    ] as const) {
      const { exitCode, stderr } = await failedStart({ ...onClone(), ...env })
      expect(exitCode).toBe(1)
      expect(stderr.split("\n")).toHaveLength(1)
      expect(stderr).toContain(variable)
    }
  }, 30_000)

  test("an unreachable PostgreSQL stops the start after a few seconds of retries, naming DATABASE_URL", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
    const port = closed.port
    closed.stop(true)
    const started = performance.now()
    const { exitCode, stderr } = await failedStart({
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres`,
      BULWARK_ADMIN_TOKEN: ADMIN_TOKEN,
      BULWARK_JWT_SECRET: JWT_SECRET
    })
    const elapsed = performance.now() - started
    expect(exitCode).toBe(1)
    expect(stderr.split("\n")).toHaveLength(1)
    expect(stderr).toStartWith("cannot start: DATABASE_URL: cannot reach PostgreSQL")
    expect(stderr).not.toContain("postgres://")
    expect(elapsed).toBeGreaterThan(4_000)
  }, 30_000)

  test("four instances migrating a fresh database at the same moment apply each migration exactly once", async () => {
    const name = `bulwark_test_${process.pid}_fresh_${crypto.randomUUID().slice(0, 8)}`
    const admin = connect(POSTGRES_ADMIN_URL)
    await admin.unsafe(`CREATE DATABASE "${name}"`)
    const url = new URL(POSTGRES_ADMIN_URL)
    url.pathname = `/${name}`
    try {
      const runs = await Promise.all(Array.from({ length: 4 }, async () => {
        const child = spawn([join(root, "src", "cli", "main.ts"), "migrate"], { DATABASE_URL: url.toString() })
        const exitCode = await child.exited
        const stdout = await new Response(child.stdout).text()
        return { exitCode, stdout, stderr: await new Response(child.stderr).text() }
      }))
      for (const run of runs) expect(run).toMatchObject({ exitCode: 0 })
      const applied = runs.flatMap((run) => (JSON.parse(run.stdout) as { applied: Array<string> }).applied)
      const database = connect(url.toString())
      try {
        const rows = await database.unsafe("SELECT name FROM effect_sql_migrations ORDER BY migration_id") as Array<{ name: string }>
        expect(rows.length).toBeGreaterThanOrEqual(6)
        expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length)
        // Every migration was applied by exactly one of the four.
        expect([...applied].sort()).toEqual(rows.map((row, index) => `${index + 1}_${row.name}`).sort())
      } finally {
        await database.close()
      }
    } finally {
      await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await admin.close()
    }
  }, 60_000)
})
