/** Access tokens, revocation and the whole 401 matrix (SPEC §3, §4), through HTTP. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { SignJWT } from "jose"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"

let server: TestServer
let tenant: { id: string; api_key: string; api_key_id: string }

beforeAll(async () => {
  server = await startServer()
  tenant = await server.createTenant()
})
afterAll(() => server.close())

const exchange = (apiKey: unknown) =>
  server.fetch("/v1/auth/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ api_key: apiKey }) })

const tokenFor = async (apiKey: string) => {
  const response = await exchange(apiKey)
  expect(response.status).toBe(200)
  return (await response.json()) as { access_token: string; token_type: string; expires_in: number }
}

const sign = (claims: Record<string, unknown>, options: { secret?: string; alg?: string; exp?: number } = {}) => {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "HS256", typ: "JWT" })
    .setSubject(tenant.api_key_id)
    .setIssuer("bulwark")
    .setIssuedAt(now - 60)
    .setExpirationTime(options.exp ?? now + 600)
    .sign(new TextEncoder().encode(options.secret ?? server.jwtSecret))
}

describe("access tokens", () => {
  test("an API key is exchanged for a 15-minute bearer token that works on every route", async () => {
    const token = await tokenFor(tenant.api_key)
    expect(token).toMatchObject({ token_type: "Bearer", expires_in: 900 })
    const created = await server.fetch("/v1/sessions", withKey(token.access_token, { method: "POST", body: "{}" }))
    expect(created.status).toBe(201)
    const { id } = (await created.json()) as { id: string }
    expect((await server.fetch(`/v1/sessions/${id}`, withKey(token.access_token))).status).toBe(200)
  })

  test("exchanging a bad, revoked or non-key credential is refused", async () => {
    await expectProblem(await exchange("bk_unknownunknownunknownunknownunknownunknown0"), 401, "AUTH_INVALID")
    await expectProblem(await exchange((await tokenFor(tenant.api_key)).access_token), 401, "AUTH_INVALID")
    await expectProblem(await exchange(42), 400, "VALIDATION_FAILED")
    const doomed = await server.createTenant()
    await server.admin(`/v1/admin/keys/${doomed.api_key_id}`, { method: "DELETE" })
    await expectProblem(await exchange(doomed.api_key), 401, "AUTH_REVOKED")
  })
})

describe("the 401 matrix for tokens", () => {
  const claims = () => ({ tid: tenant.id, ver: 0, agents: ["*"] })

  test("garbage in the shape of a JWT", async () => {
    await expectProblem(await server.fetch("/v1/sessions", withKey("aaa.bbb.ccc")), 401, "AUTH_INVALID")
  })

  test("a bad signature", async () => {
    const forged = await sign(claims(), { secret: "another-secret-another-secret-another" })
    await expectProblem(await server.fetch("/v1/sessions", withKey(forged)), 401, "AUTH_INVALID")
  })

  test("tampered claims", async () => {
    const real = (await tokenFor(tenant.api_key)).access_token
    const [header, payload, signature] = real.split(".")
    const claimsJson = JSON.parse(Buffer.from(payload!, "base64url").toString())
    const tampered = Buffer.from(JSON.stringify({ ...claimsJson, tid: crypto.randomUUID() })).toString("base64url")
    await expectProblem(await server.fetch("/v1/sessions", withKey(`${header}.${tampered}.${signature}`)), 401, "AUTH_INVALID")
  })

  test("alg: none and a switched algorithm", async () => {
    const none = [
      Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url"),
      Buffer.from(JSON.stringify({ ...claims(), sub: tenant.api_key_id, iss: "bulwark", exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url"),
      ""
    ].join(".")
    await expectProblem(await server.fetch("/v1/sessions", withKey(none)), 401, "AUTH_INVALID")
    const hs512 = await sign(claims(), { alg: "HS512" })
    await expectProblem(await server.fetch("/v1/sessions", withKey(hs512)), 401, "AUTH_INVALID")
  })

  test("an expired token is AUTH_EXPIRED", async () => {
    const expired = await sign(claims(), { exp: Math.floor(Date.now() / 1000) - 5 })
    await expectProblem(await server.fetch("/v1/sessions", withKey(expired)), 401, "AUTH_EXPIRED")
  })

  test("a correctly signed token for a version that was revoked is AUTH_REVOKED", async () => {
    const stale = await sign({ ...claims(), ver: 99 })
    await expectProblem(await server.fetch("/v1/sessions", withKey(stale)), 401, "AUTH_REVOKED")
  })
})

describe("revocation", () => {
  test("POST /v1/auth/revoke rejects every token issued before; new ones work; only the key may revoke", async () => {
    const owner = await server.createTenant()
    const before = (await tokenFor(owner.api_key)).access_token
    expect((await server.fetch("/v1/sessions", withKey(before))).status).toBe(200)
    await expectProblem(await server.fetch("/v1/auth/revoke", withKey(before, { method: "POST" })), 403, "FORBIDDEN")

    const revoked = await server.fetch("/v1/auth/revoke", { method: "POST", headers: { authorization: `Bearer ${owner.api_key}` } })
    expect(revoked.status).toBe(204)
    await expectProblem(await server.fetch("/v1/sessions", withKey(before)), 401, "AUTH_REVOKED")
    expect((await server.fetch("/v1/sessions", withKey(owner.api_key))).status).toBe(200)
    const after = (await tokenFor(owner.api_key)).access_token
    expect((await server.fetch("/v1/sessions", withKey(after))).status).toBe(200)
  })

  test("deleting a key rejects the key and its tokens from the next request on", async () => {
    const owner = await server.createTenant()
    const token = (await tokenFor(owner.api_key)).access_token
    expect((await server.admin(`/v1/admin/keys/${owner.api_key_id}`, { method: "DELETE" })).status).toBe(204)
    await expectProblem(await server.fetch("/v1/sessions", withKey(owner.api_key)), 401, "AUTH_REVOKED")
    await expectProblem(await server.fetch("/v1/sessions", withKey(token)), 401, "AUTH_REVOKED")
  })
})

describe("fail closed", () => {
  sqliteOnly("renames a table through a second SQLite connection")("when the database cannot say whether a token is revoked, the request is refused with 503, never let through", async () => {
    const closed = await startServer()
    const other = new Database(closed.databaseFile)
    try {
      const owner = await closed.createTenant()
      const token = { access_token: await closed.accessToken(owner.api_key) }
      other.run("PRAGMA foreign_keys = OFF")
      other.run("ALTER TABLE api_keys RENAME TO api_keys_away")
      await expectProblem(await closed.fetch("/v1/sessions", withKey(token.access_token)), 503, "DATABASE_UNAVAILABLE")
      await expectProblem(await closed.fetch("/v1/sessions", withKey(owner.api_key)), 503, "DATABASE_UNAVAILABLE")
      other.run("ALTER TABLE api_keys_away RENAME TO api_keys")
      expect((await closed.fetch("/v1/sessions", withKey(token.access_token))).status).toBe(200)
    } finally {
      other.close()
      await closed.close()
    }
  })
})
