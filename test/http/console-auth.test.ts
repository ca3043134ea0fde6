/**
 * Console sign-in (SPEC §12) through HTTP: the admin token for an HttpOnly, SameSite=Strict,
 * expiring cookie that is not the token; cookie changes only from the server's own Origin; sign-out
 * ends the session on the server; failed sign-ins ledgered and limited like any failed authentication.
 */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { sqliteOnly } from "../support/postgres.js"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer } from "../support/server.js"

const TRACE_URL = "https://traces.example/trace/{trace_id}"

let server: TestServer
let origin: string

beforeAll(async () => {
  server = await startServer({ traceUrl: TRACE_URL })
  origin = server.url
})
afterAll(() => server.close())

const signIn = (token: string, headers: Record<string, string> = { origin }) =>
  server.fetch("/v1/console/session", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ admin_token: token })
  })

/** Signs in and returns the cookie as a browser would send it back. */
const signedIn = async (): Promise<string> => {
  const response = await signIn(server.adminToken)
  expect(response.status).toBe(200)
  const setCookie = response.headers.get("set-cookie") ?? ""
  return setCookie.split(";")[0]!
}

describe("signing in", () => {
  test("the right token from the server's own origin sets an HttpOnly, SameSite=Strict, expiring cookie that is not the token", async () => {
    const response = await signIn(server.adminToken)
    expect(response.status).toBe(200)
    expect(response.headers.get("cache-control")).toBe("no-store")
    const setCookie = response.headers.get("set-cookie") ?? ""
    expect(setCookie).toMatch(/^bulwark_console=[A-Za-z0-9_-]{43};/)
    expect(setCookie).toContain("HttpOnly")
    expect(setCookie).toContain("SameSite=Strict")
    expect(setCookie).toContain("Max-Age=28800")
    expect(setCookie).toContain("Path=/")
    expect(setCookie).not.toContain("Secure")
    expect(setCookie).not.toContain(server.adminToken)
    const body = (await response.json()) as { signed_in_with: string; expires_at: string; trace_url: string }
    expect(JSON.stringify(body)).not.toContain(server.adminToken)
    expect(body.signed_in_with).toBe("console_session")
    expect(body.trace_url).toBe(TRACE_URL)
    const hours = (Date.parse(body.expires_at) - Date.now()) / 3_600_000
    expect(hours).toBeGreaterThan(7.9)
    expect(hours).toBeLessThanOrEqual(8)
  })

  test("behind https the cookie is Secure", async () => {
    const response = await signIn(server.adminToken, { origin, "x-forwarded-proto": "https" })
    expect(response.headers.get("set-cookie")).toContain("Secure")
  })

  test("a wrong token is 401 AUTH_INVALID with no cookie, ledgered as auth without the token", async () => {
    const wrong = "not-the-admin-token-but-long-enough-to-look-real"
    const response = await signIn(wrong)
    const problem = await expectProblem(response, 401, "AUTH_INVALID")
    expect(response.headers.get("set-cookie")).toBeNull()
    const record = await ledgerRecord(server, problem.error_id)
    expect(record).toMatchObject({ type: "auth", code: "AUTH_INVALID", status: 401, route: "/v1/console/session", method: "POST" })
    expect(record.request_payload).toEqual({ admin_token: "[Filtered]" })
    expect(JSON.stringify(record)).not.toContain(wrong)
  })

  test("from another origin, or with none, it is 403 FORBIDDEN even with the right token", async () => {
    for (const headers of [{ origin: "http://evil.example" }, {}, { origin: "null" }]) {
      const response = await signIn(server.adminToken, headers)
      await expectProblem(response, 403, "FORBIDDEN")
      expect(response.headers.get("set-cookie")).toBeNull()
    }
  })
})

describe("the cookie", () => {
  let cookie: string
  beforeAll(async () => {
    cookie = await signedIn()
  })

  test("reads the admin API and /health's details without an Origin", async () => {
    const groups = await server.fetch("/v1/admin/errors/groups", { headers: { cookie } })
    expect(groups.status).toBe(200)
    expect(groups.headers.get("cache-control")).toBe("private, no-store")
    const health = (await (await server.fetch("/health", { headers: { cookie } })).json()) as { dependencies?: unknown }
    expect(health.dependencies).toBeDefined()
    const session = (await (await server.fetch("/v1/console/session", { headers: { cookie } })).json()) as { signed_in_with: string }
    expect(session.signed_in_with).toBe("console_session")
  })

  test("changes something only with the server's own Origin, else 403 FORBIDDEN", async () => {
    const flip = (headers: Record<string, string>, action: string) =>
      server.fetch("/v1/admin/breakers/cache", {
        method: "POST",
        headers: { cookie, "content-type": "application/json", ...headers },
        body: JSON.stringify({ action })
      })
    await expectProblem(await flip({}, "open"), 403, "FORBIDDEN")
    await expectProblem(await flip({ origin: "http://evil.example" }, "open"), 403, "FORBIDDEN")
    const opened = await flip({ origin }, "open")
    expect(opened.status).toBe(200)
    expect(((await opened.json()) as { state: string }).state).toBe("forced_open")
    const closed = await flip({ origin }, "close")
    expect(((await closed.json()) as { state: string }).state).toBe("closed")
  })

  test("a cookie the server did not issue is 401 AUTH_INVALID", async () => {
    for (const forged of ["bulwark_console=" + "A".repeat(43), "bulwark_console=short", `bulwark_console=${server.adminToken}`]) {
      await expectProblem(await server.fetch("/v1/admin/errors", { headers: { cookie: forged } }), 401, "AUTH_INVALID")
    }
  })

  test("signing out ends the session on the server and clears the cookie", async () => {
    const own = await signedIn()
    await expectProblem(await server.fetch("/v1/console/session", { method: "DELETE", headers: { cookie: own } }), 403, "FORBIDDEN")
    const out = await server.fetch("/v1/console/session", { method: "DELETE", headers: { cookie: own, origin } })
    expect(out.status).toBe(204)
    expect(out.headers.get("set-cookie")).toMatch(/^bulwark_console=; .*Max-Age=0/)
    // The same cookie, replayed after sign-out, opens nothing.
    await expectProblem(await server.fetch("/v1/admin/errors", { headers: { cookie: own } }), 401, "AUTH_INVALID")
    const stillIn = await server.fetch("/v1/admin/errors", { headers: { cookie } })
    expect(stillIn.status).toBe(200)
  })

  sqliteOnly("edits the session row in SQLite's file")("past its expiry it is 401 AUTH_EXPIRED", async () => {
    const own = await signedIn()
    const db = new Database(server.databaseFile)
    try {
      db.run("UPDATE console_sessions SET expires_at = ?", [new Date(Date.now() - 1000).toISOString()])
    } finally {
      db.close()
    }
    await expectProblem(await server.fetch("/v1/admin/errors", { headers: { cookie: own } }), 401, "AUTH_EXPIRED")
  })
})

describe("failed sign-ins", () => {
  test("count against the caller's address: past the limit they are 429 with Retry-After", { timeout: 30_000 }, async () => {
    const limited = await startServer({ rateLimit: { limit: 3, windowMillis: 60_000 } })
    try {
      const attempt = () =>
        limited.fetch("/v1/console/session", {
          method: "POST",
          headers: { "content-type": "application/json", origin: limited.url },
          body: JSON.stringify({ admin_token: "wrong-wrong-wrong-wrong-wrong-wrong" })
        })
      for (let i = 0; i < 3; i++) await expectProblem(await attempt(), 401, "AUTH_INVALID")
      const refused = await attempt()
      await expectProblem(refused, 429, "RATE_LIMITED")
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0)
      await eventually(async () => {
        const response = await limited.admin("/v1/admin/errors?code=AUTH_INVALID")
        const rows = ((await response.json()) as { data: Array<unknown> }).data
        return rows.length === 3 ? rows : undefined
      }, 10_000)
    } finally {
      await limited.close()
    }
  })
})
