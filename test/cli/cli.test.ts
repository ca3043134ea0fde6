/**
 * The admin CLI as real processes, against a real SQLite file (and, through test/postgres/cli.test.ts,
 * a real PostgreSQL database); what it creates works through HTTP, and its stdout is only its result.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { sqliteOnly } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

/** Each CLI call is a new Bun process (about half a second to start); a test runs several. */
const CLI_TIMEOUT = 30_000

const entry = join(import.meta.dir, "..", "..", "src", "cli", "main.ts")
let directory: string

/** Runs the CLI as a user would, on the database at `databaseUrl`, with `env` added. */
const cliOn = (databaseUrl: string, env: Record<string, string> = {}) => async (...args: Array<string>) => {
  const child = Bun.spawn(["bun", entry, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", DATABASE_URL: databaseUrl, ...env },
    stdout: "pipe",
    stderr: "pipe"
  })
  const exitCode = await child.exited
  return { exitCode, stdout: await new Response(child.stdout).text(), stderr: (await new Response(child.stderr).text()).trim() }
}

const cli = (...args: Array<string>) => cliOn(`file:${join(directory, "bulwark.db")}`)(...args)

/** On PostgreSQL the same tests run against the server's database; these need a file of their own. */
const onSqlite = sqliteOnly("runs on a SQLite file of its own")

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), "bulwark-cli-"))
})
afterAll(() => rmSync(directory, { recursive: true, force: true }))

describe("bun run cli", () => {
  onSqlite("migrate applies the schema once", async () => {
    const first = await cli("migrate")
    expect(first.exitCode).toBe(0)
    expect(JSON.parse(first.stdout).applied.length).toBeGreaterThan(0)
    const again = await cli("migrate")
    expect(JSON.parse(again.stdout)).toEqual({ applied: [] })
  }, CLI_TIMEOUT)

  onSqlite("tenant create, key create with agents, key revoke; errors exit 1 with one line", async () => {
    const tenant = await cli("tenant", "create", "acme")
    expect(tenant.exitCode).toBe(0)
    const created = JSON.parse(tenant.stdout) as { id: string; name: string; api_key: string; api_key_id: string }
    expect(created.name).toBe("acme")
    expect(created.api_key).toMatch(/^bk_[A-Za-z0-9_-]{43}$/)

    const explicit = await cli("key", "create", "--tenant", created.id, "--agents", "planner,coder")
    expect(JSON.parse(explicit.stdout)).toMatchObject({ tenant_id: created.id, allowed_agents: ["planner", "coder"], admin: false })
    const wildcard = await cli("key", "create", "--tenant", created.id, "--agents", "*", "--admin")
    expect(JSON.parse(wildcard.stdout)).toMatchObject({ allowed_agents: ["*"], admin: true })

    // stdout is the result alone (so `| jq` works): it parses whole, and nothing else is on it.
    expect(tenant.stdout.trim().startsWith("{")).toBe(true)

    const duplicate = await cli("tenant", "create", "acme")
    expect(duplicate.exitCode).toBe(1)
    expect(duplicate.stderr).toBe(`error: TENANT_ALREADY_EXISTS: A tenant named "acme" already exists.`)

    const unknownTenant = await cli("key", "create", "--tenant", crypto.randomUUID())
    expect(unknownTenant.exitCode).toBe(1)
    expect(unknownTenant.stderr).toStartWith("error: TENANT_NOT_FOUND")

    const badId = await cli("key", "create", "--tenant", "nope")
    expect(badId.exitCode).toBe(1)
    expect(badId.stderr).toContain("--tenant is not valid")

    const revoked = await cli("key", "revoke", created.api_key_id)
    expect(revoked.exitCode).toBe(0)
    const unknownKey = await cli("key", "revoke", crypto.randomUUID())
    expect(unknownKey.exitCode).toBe(1)
    expect(unknownKey.stderr).toStartWith("error: KEY_NOT_FOUND")
  }, CLI_TIMEOUT)

  onSqlite("--help describes every command and every option", async () => {
    const root = await cli("--help")
    expect(root.exitCode).toBe(0)
    for (const command of ["migrate", "tenant", "key", "errors", "breaker"]) expect(root.stdout).toContain(command)
    const described: Array<[Array<string>, Array<string>]> = [
      [["tenant", "create"], ["the tenant's name"]],
      [["key", "create"], ["the tenant id", "the agents the key may post as", "a label for the key", "--admin"]],
      [["key", "revoke"], ["the API key's id"]],
      [["errors", "list"], ["--type", "--code", "--severity", "--session", "--resolved", "--since", "--limit", "at most this many records"]],
      [["errors", "show"], ["the error_id of a record"]],
      [["errors", "resolve"], ["the error_id of a record", "why it is resolved"]],
      [["breaker"], ["database, cache or memory", "open (refuse calls)"]]
    ]
    for (const [command, texts] of described) {
      const help = await cli(...command, "--help")
      expect(help.exitCode).toBe(0)
      for (const text of texts) expect(help.stdout).toContain(text)
    }
  }, 2 * CLI_TIMEOUT)

  onSqlite("a reply that is not JSON is reported as what it is", async () => {
    const notBulwark = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("<html>bad gateway</html>", { status: 502, headers: { "content-type": "text/html" } }) })
    try {
      const run = cliOn(`file:${join(directory, "bulwark.db")}`, { BULWARK_URL: `http://127.0.0.1:${notBulwark.port}`, BULWARK_ADMIN_TOKEN: "x".repeat(32) })
      const reply = await run("breaker", "memory", "status")
      expect(reply.exitCode).toBe(1)
      expect(reply.stdout).toBe("")
      expect(reply.stderr).toBe(
        `error: the server at http://127.0.0.1:${notBulwark.port} answered 502 with text/html, not JSON; is BULWARK_URL a Bulwark server?`
      )
    } finally {
      notBulwark.stop(true)
    }
  }, CLI_TIMEOUT)
})

describe("keys from the CLI work through HTTP", () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.close())

  test("a CLI-made key authenticates; once revoked it is AUTH_REVOKED", async () => {
    const run = cliOn(server.databaseUrl)
    const tenantRun = await run("tenant", "create", `from-cli-${crypto.randomUUID()}`)
    expect(tenantRun.exitCode).toBe(0)
    const tenant = JSON.parse(tenantRun.stdout) as { api_key: string; api_key_id: string }
    expect((await server.fetch("/v1/sessions", withKey(tenant.api_key))).status).toBe(200)
    expect((await run("key", "revoke", tenant.api_key_id)).exitCode).toBe(0)
    // SQLite: at once (its commit counter moves). PostgreSQL: the revoking transaction bumped the
    // generation the server polls every 250 ms, so within 1 s; the wait allows a busy machine more.
    const refused = await eventually(async () => {
      const response = await server.fetch("/v1/sessions", withKey(tenant.api_key))
      return response.status === 401 ? response : undefined
    }, 5_000)
    await expectProblem(refused, 401, "AUTH_REVOKED")
  }, CLI_TIMEOUT)

  test("breaker memory status asks the running server; only JSON on stdout", async () => {
    const run = cliOn(server.databaseUrl, { BULWARK_URL: server.url, BULWARK_ADMIN_TOKEN: server.adminToken })
    const status = await run("breaker", "memory", "status")
    expect(status.exitCode).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ dependency: "memory" })
    const opened = await run("breaker", "memory", "open")
    expect(opened.exitCode).toBe(0)
    expect(JSON.parse((await run("breaker", "memory", "status")).stdout)).toMatchObject({ dependency: "memory", state: "forced_open" })
    expect((await run("breaker", "memory", "close")).exitCode).toBe(0)
  }, CLI_TIMEOUT)

  test("errors list, show and resolve read the ledger the server wrote", async () => {
    const run = cliOn(server.databaseUrl)
    const tenant = await server.createTenant()
    const problem = await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
    await ledgerRecord(server, problem.error_id)

    const listed = await run("errors", "list", "--code", "SESSION_NOT_FOUND", "--resolved", "false")
    expect(listed.exitCode).toBe(0)
    expect((JSON.parse(listed.stdout) as { data: Array<{ error_id: string }> }).data.map((row) => row.error_id)).toContain(problem.error_id)

    const shown = await run("errors", "show", problem.error_id)
    expect(JSON.parse(shown.stdout)).toMatchObject({ error_id: problem.error_id, code: "SESSION_NOT_FOUND", status: 404 })

    const resolved = await run("errors", "resolve", problem.error_id, "--notes", "expected in tests")
    expect(JSON.parse(resolved.stdout)).toMatchObject({ resolved: true, notes: "expected in tests" })

    const missing = await run("errors", "show", crypto.randomUUID())
    expect(missing.exitCode).toBe(1)
    expect(missing.stderr).toStartWith("error: ERROR_NOT_FOUND")
    const badFilter = await run("errors", "list", "--severity", "loud")
    expect(badFilter.exitCode).toBe(1)
  }, CLI_TIMEOUT)
})
