/** Every catalogue row the spine can produce, through HTTP, in the exact problem shape of SPEC §2. */
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { problemTypes, slugOf, statusOfCode, type ErrorCode } from "../../src/errors.js"
import { defaultResilience } from "../../layers/database/Database.js"
import { defectRoute, eventually, expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"
import { faultMatrix } from "../support/faultMatrix.js"

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer({ extraRoutes: defectRoute })
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

describe("400 VALIDATION_FAILED", () => {
  test("a body that is not JSON", async () => {
    const response = await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{not json" }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors).toEqual([{ pointer: "", detail: "must be a JSON document" }])
  })

  test("a POST without a body on a route that needs one", async () => {
    const response = await server.fetch("/v1/sessions", { method: "POST", headers: { authorization: `Bearer ${key}` } })
    await expectProblem(response, 400, "VALIDATION_FAILED")
  })

  test("a field of the wrong type names its pointer and does not echo the value", async () => {
    const response = await server.fetch(
      "/v1/sessions",
      withKey(key, { method: "POST", body: JSON.stringify({ title: 12345678, metadata: { password: "hunter2" } }) })
    )
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors?.map((issue) => issue.pointer)).toEqual(["/title"])
    expect(problem.errors?.[0]?.detail).toContain("Expected string")
    expect(JSON.stringify(problem)).not.toContain("12345678")
  })

  test("a malformed session id is 400 with a pointer, not 404 or 500", async () => {
    const response = await server.fetch("/v1/sessions/not-a-uuid", withKey(key))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors?.[0]?.pointer).toBe("/id")
  })

  test("a bad query parameter", async () => {
    for (const query of ["limit=0", "limit=201", "limit=ten"]) {
      const response = await server.fetch(`/v1/sessions?${query}`, withKey(key))
      const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
      expect(problem.errors?.[0]?.pointer).toBe("/limit")
    }
  })

  test("a cursor the server did not issue", async () => {
    const response = await server.fetch("/v1/sessions?cursor=bm90LWEtY3Vyc29y", withKey(key))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors?.[0]?.pointer).toBe("/cursor")
  })
})

describe("401", () => {
  const cases: ReadonlyArray<[string, Record<string, string>, string]> = [
    ["no Authorization header", {}, "AUTH_MISSING"],
    ["an empty header", { authorization: "" }, "AUTH_MISSING"],
    ["a non-Bearer scheme", { authorization: "Token abc" }, "AUTH_MISSING"],
    ["an empty bearer", { authorization: "Bearer " }, "AUTH_MISSING"],
    ["garbage", { authorization: "Bearer garbage" }, "AUTH_INVALID"],
    ["an unknown key", { authorization: "Bearer bk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, "AUTH_INVALID"]
  ]
  for (const [name, headers, code] of cases) {
    test(`${name} is ${code} with WWW-Authenticate`, async () => {
      const response = await server.fetch("/v1/sessions", { headers })
      await expectProblem(response, 401, code)
      expect(response.headers.get("www-authenticate")).toStartWith("Bearer")
    })
  }

  test("a deleted key is AUTH_REVOKED from the next request on", async () => {
    const tenant = await server.createTenant()
    expect((await server.fetch("/v1/sessions", withKey(tenant.api_key))).status).toBe(200)
    expect((await server.admin(`/v1/admin/keys/${tenant.api_key_id}`, { method: "DELETE" })).status).toBe(204)
    await expectProblem(await server.fetch("/v1/sessions", withKey(tenant.api_key)), 401, "AUTH_REVOKED")
  })

  test("admin routes without a credential are AUTH_MISSING", async () => {
    const response = await server.fetch("/v1/admin/tenants", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "x" })
    })
    await expectProblem(response, 401, "AUTH_MISSING")
  })
})

describe("403 FORBIDDEN", () => {
  test("a tenant API key on an admin route", async () => {
    const response = await server.fetch("/v1/admin/tenants", withKey(key, { method: "POST", body: JSON.stringify({ name: "x" }) }))
    await expectProblem(response, 403, "FORBIDDEN")
  })
})

describe("404", () => {
  test("an unknown route", async () => {
    await expectProblem(await server.fetch("/v2/nothing-here"), 404, "ROUTE_NOT_FOUND")
  })

  test("an unknown session", async () => {
    const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(key))
    await expectProblem(response, 404, "SESSION_NOT_FOUND")
  })

  test("keys for an unknown tenant", async () => {
    const response = await server.admin(`/v1/admin/tenants/${crypto.randomUUID()}/keys`, { method: "POST", body: "{}" })
    await expectProblem(response, 404, "TENANT_NOT_FOUND")
  })

  test("revoking an unknown key", async () => {
    await expectProblem(await server.admin(`/v1/admin/keys/${crypto.randomUUID()}`, { method: "DELETE" }), 404, "KEY_NOT_FOUND")
  })
})

describe("409", () => {
  test("a client-chosen session id that exists", async () => {
    const body = JSON.stringify({ id: crypto.randomUUID() })
    expect((await server.fetch("/v1/sessions", withKey(key, { method: "POST", body }))).status).toBe(201)
    await expectProblem(await server.fetch("/v1/sessions", withKey(key, { method: "POST", body })), 409, "SESSION_ALREADY_EXISTS")
  })

  test("a tenant name that exists", async () => {
    const body = JSON.stringify({ name: `dup-${crypto.randomUUID()}` })
    expect((await server.admin("/v1/admin/tenants", { method: "POST", body })).status).toBe(201)
    await expectProblem(await server.admin("/v1/admin/tenants", { method: "POST", body }), 409, "TENANT_ALREADY_EXISTS")
  })
})

describe("413 and 415", () => {
  const big = JSON.stringify({ title: "x".repeat(1024 * 1024) })

  test("a body over 1 MiB", async () => {
    const problem = await expectProblem(await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: big })), 413, "PAYLOAD_TOO_LARGE")
    expect(problem.errors?.length).toBe(1)
  })

  test("a chunked body over 1 MiB (no Content-Length)", async () => {
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big))
        controller.close()
      }
    })
    const response = await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: stream }))
    await expectProblem(response, 413, "PAYLOAD_TOO_LARGE")
  })

  test("a body that is not application/json", async () => {
    const response = await server.fetch("/v1/sessions", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "text/plain" },
      body: "hello"
    })
    await expectProblem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
  })
})

describe("500 INTERNAL_ERROR", () => {
  test("a defect leaks nothing: no message, stack, SQL or path", async () => {
    const response = await server.fetch("/__test/defect")
    const problem = await expectProblem(response, 500, "INTERNAL_ERROR")
    expect(problem.detail).toBe("An internal error occurred.")
    expect(Object.keys(problem).sort()).toEqual(["code", "detail", "error_id", "instance", "status", "title", "type"])
  })
})

describe("503 DATABASE_UNAVAILABLE", () => {
  sqliteOnly("holds SQLite's file lock")("a write while another connection holds the SQLite file locked: 503 with Retry-After, ledgered, nothing half-written", async () => {
    const locked = await startServer({
      sqliteBusyTimeoutMillis: 10,
      databaseResilience: { ...defaultResilience, breaker: { ...defaultResilience.breaker, openDuration: "200 millis" } }
    })
    try {
      const tenant = await locked.createTenant()
      const holder = new Database(locked.databaseFile)
      const fault = faultMatrix(locked, "sqlite-locked", { broken: "SQLite's write lock", how: "another connection holds `BEGIN EXCLUSIVE` on the file; `POST /v1/sessions`", dependency: "database" })
      holder.run("BEGIN EXCLUSIVE")
      const id = crypto.randomUUID()
      const body = JSON.stringify({ id })
      let errorId: string
      try {
        const started = performance.now()
        const response = await locked.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body }))
        const problem = await expectProblem(response, 503, "DATABASE_UNAVAILABLE")
        await fault.saw(problem)
        // Retried within the budget (500 ms of retries at most), not left waiting on the lock until the 10 s deadline.
        expect(performance.now() - started).toBeLessThan(5000)
        expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
        errorId = problem.error_id
      } finally {
        holder.run("ROLLBACK")
        holder.close()
        fault.healed()
      }
      // Once the lock is gone (and the breaker, if it opened, has let a probe through): nothing
      // was half-written, the same request succeeds, and the 503 is in the ledger.
      await eventually(async () => {
        const response = await locked.fetch(`/v1/sessions/${id}`, withKey(tenant.api_key))
        const status = response.status
        await response.body?.cancel()
        return status === 503 ? undefined : status
      }).then((status) => expect(status).toBe(404))
      await fault.recovered()
      expect((await locked.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body }))).status).toBe(201)
      expect(await ledgerRecord(locked, errorId)).toMatchObject({ code: "DATABASE_UNAVAILABLE", status: 503, severity: "error", type: "database" })
    } finally {
      await locked.close()
    }
  }, 20_000)
})

describe("problem types", () => {
  test("GET /problems/{slug} describes every code of the catalogue", async () => {
    for (const code of Object.keys(problemTypes) as Array<ErrorCode>) {
      const response = await server.fetch(`/problems/${slugOf(code)}`)
      expect(response.status).toBe(200)
      const body = (await response.json()) as { code: string; status: number; title: string; advice: string }
      expect(body).toMatchObject({ code, status: statusOfCode(code), title: problemTypes[code].title })
      expect(body.advice.length).toBeGreaterThan(10)
    }
  })

  test("an unknown problem type is a 404 problem", async () => {
    await expectProblem(await server.fetch("/problems/no-such-problem"), 404, "ROUTE_NOT_FOUND")
  })
})

describe("request ids", () => {
  test("a client's X-Request-Id is echoed on success and on failure", async () => {
    for (const path of ["/health/live", "/nope"]) {
      const response = await server.fetch(path, { headers: { "x-request-id": "client-req-42" } })
      expect(response.headers.get("x-request-id")).toBe("client-req-42")
      await response.body?.cancel()
    }
  })

  test("one is generated when the client sends none", async () => {
    const response = await server.fetch("/health/live")
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })
})
