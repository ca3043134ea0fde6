/**
 * Failed authentications count against the client address's limit (SPEC §4): a scan of guessed keys
 * is throttled (429 with Retry-After, ledgered) and stops reaching the database, while the
 * address's valid credentials keep working; revoked and expired credentials are not guesses.
 */
import { describe, expect, test } from "bun:test"
import { SignJWT } from "jose"
import { eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

const SESSION = "00000000-0000-4000-8000-000000000000"

/** A guessed API key: well formed, never issued. */
const guess = () => `bk_${crypto.randomUUID().replaceAll("-", "")}`

/** An MCP call of the stateless revision with `credential`: the edge authenticates it before anything else. */
const mcp = (server: TestServer, credential: string) =>
  server.fetch("/mcp", withKey(credential, {
    method: "POST",
    headers: { accept: "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/list",
      params: {
        _meta: {
          "io.modelcontextprotocol/protocolVersion": "2026-07-28",
          "io.modelcontextprotocol/clientInfo": { name: "test", version: "1" },
          "io.modelcontextprotocol/clientCapabilities": {}
        }
      }
    })
  }))

const setBreaker = (server: TestServer, action: "open" | "close") =>
  server.admin("/v1/admin/breakers/database", { method: "POST", body: JSON.stringify({ action }) })

const statusOf = async (response: Response) => {
  await response.body?.cancel()
  return response.status
}

describe("failed authentications against the address's limit", () => {
  test("a scan of guessed keys is 401 up to the limit, then 429 with Retry-After (ledgered) and no longer looked up; the address's valid key and token keep working", async () => {
    const server = await startServer({ rateLimit: { limit: 4, windowMillis: 60 * 60_000 } })
    try {
      const tenant = await server.createTenant()
      // Anonymous (counted against the address): taken before the scan, which then has 3 guesses left.
      const token = await server.accessToken(tenant.api_key)
      const session = await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ id: SESSION }) }))
      expect(session.status).toBe(201)

      // Through the API's routes, the lean read path and /mcp: each fails 401 and counts.
      await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
      await expectProblem(await server.fetch(`/v1/sessions/${SESSION}`, withKey("not-a-credential")), 401, "AUTH_INVALID")
      await expectProblem(await mcp(server, guess()), 401, "AUTH_INVALID")
      const limited = await server.fetch(`/v1/sessions/${SESSION}`, withKey(guess()))
      const problem = await expectProblem(limited, 429, "RATE_LIMITED")
      expect(problem.retry_after_seconds).toBeGreaterThanOrEqual(1)
      expect(limited.headers.get("ratelimit-remaining")).toBe("0")
      const record = await ledgerRecord(server, problem.error_id)
      expect(record).toMatchObject({ code: "RATE_LIMITED", status: 429 })

      // The address's valid credentials keep working, on every door (the key's own limit is 4).
      expect(await statusOf(await server.fetch(`/v1/sessions/${SESSION}`, withKey(tenant.api_key)))).toBe(200)
      expect(await statusOf(await server.fetch("/v1/sessions", withKey(token)))).toBe(200)
      expect(await statusOf(await mcp(server, tenant.api_key))).toBe(200)

      // Guesses are refused before the database: with its breaker forced open they are 429, not 503.
      expect(await statusOf(await setBreaker(server, "open"))).toBe(200)
      try {
        for (const response of [
          await server.fetch("/v1/sessions", withKey(guess())),
          await server.fetch(`/v1/sessions/${SESSION}`, withKey(guess())),
          await mcp(server, guess()),
          await server.fetch("/v1/sessions", withKey("not-a-credential"))
        ]) {
          const refused = await expectProblem(response, 429, "RATE_LIMITED")
          // Until the end of the same window as the first refusal.
          expect(refused.retry_after_seconds).toBeGreaterThanOrEqual(1)
          expect(refused.retry_after_seconds).toBeLessThanOrEqual(problem.retry_after_seconds!)
        }
        // So is a guessed admin credential, while the admin token itself still works.
        await expectProblem(await server.fetch("/v1/admin/errors", withKey(guess())), 429, "RATE_LIMITED")
      } finally {
        expect(await statusOf(await setBreaker(server, "close"))).toBe(200)
      }
      // A health probe is never limited: a wrong credential there is the anonymous answer.
      const health = await server.fetch("/health", withKey(guess()))
      expect(health.status).toBe(200)
      expect(await health.json()).toEqual({ status: "ok" })
    } finally {
      await server.close()
    }
  })

  test("two instances share the address's count: a scan spread over both is 429 on both past the limit, and a key each has served keeps working on each", async () => {
    const rateLimit = { limit: 4, windowMillis: 60 * 60_000 }
    const first = await startServer({ rateLimit, rateLimitStore: "database" })
    const second = await startServer({ rateLimit, rateLimitStore: "database", databaseFile: first.databaseFile })
    try {
      const tenant = await first.createTenant()
      for (const via of [first, second]) expect(await statusOf(await via.fetch("/v1/sessions", withKey(tenant.api_key)))).toBe(200)
      for (const via of [first, second, first, second]) await expectProblem(await via.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
      // Past the shared count each refuses, the second although it saw only two of the guesses.
      for (const via of [first, second, second]) await expectProblem(await via.fetch("/v1/sessions", withKey(guess())), 429, "RATE_LIMITED")
      for (const via of [first, second]) expect(await statusOf(await via.fetch("/v1/sessions", withKey(tenant.api_key)))).toBe(200)
    } finally {
      await second.close()
      await first.close()
    }
  })

  test("revoked and expired credentials are not guesses: sending them does not spend the address's limit", async () => {
    const server = await startServer({ rateLimit: { limit: 3, windowMillis: 60 * 60_000 } })
    try {
      const revoked = await server.createTenant()
      expect(await statusOf(await server.admin(`/v1/admin/keys/${revoked.api_key_id}`, { method: "DELETE" }))).toBe(204)
      // A client that keeps polling with its revoked key, and one with its expired token, far past the limit.
      const now = Math.floor(Date.now() / 1000)
      const expired = await new SignJWT({ tid: revoked.id, ver: 0, agents: ["*"] })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(revoked.api_key_id)
        .setIssuer("bulwark")
        .setIssuedAt(now - 3600)
        .setExpirationTime(now - 60)
        .sign(new TextEncoder().encode(server.jwtSecret))
      for (let i = 0; i < 4; i++) {
        await expectProblem(await server.fetch("/v1/sessions", withKey(revoked.api_key)), 401, "AUTH_REVOKED")
        await expectProblem(await server.fetch("/v1/sessions", withKey(expired)), 401, "AUTH_EXPIRED")
      }
      // A key this process has never seen, from the same address, is looked up and served.
      const fresh = await server.createTenant()
      expect(await statusOf(await server.fetch("/v1/sessions", withKey(fresh.api_key)))).toBe(200)
      // And a guess is still only the first of the address's failures.
      await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
    } finally {
      await server.close()
    }
  })

  test("while the address is throttled, a key this process does not hold is refused 429 before it is looked up; the throttle ends with the window", async () => {
    const WINDOW = 1000
    const server = await startServer({ rateLimit: { limit: 2, windowMillis: WINDOW } })
    try {
      const cold = await server.createTenant()
      // At the start of a window, so that the scan and the refusals below fall in one.
      await Bun.sleep(WINDOW - (Date.now() % WINDOW))
      await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
      await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
      const problem = await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 429, "RATE_LIMITED")
      expect(problem.retry_after_seconds).toBe(1)
      // The key was never used here, so without the database it cannot be told from a guess: it
      // waits for the window (an access token would not: its signature proves it).
      await expectProblem(await server.fetch("/v1/sessions", withKey(cold.api_key)), 429, "RATE_LIMITED")
      // The next window looks keys up again: the cold key is served, a guess is 401 again.
      await eventually(async () => ((await statusOf(await server.fetch("/v1/sessions", withKey(cold.api_key)))) === 200 ? true : undefined), 5_000)
      await expectProblem(await server.fetch("/v1/sessions", withKey(guess())), 401, "AUTH_INVALID")
    } finally {
      await server.close()
    }
  })
})
