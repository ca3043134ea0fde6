/** Traces and metrics arrive at a real OTLP/HTTP receiver, shaped as SPEC §7 says. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { defectRoute, eventually, expectProblem, startServer, type TestServer, withKey } from "../support/server.js"
import { attribute, type ReceivedSpan, type Receiver, startReceiver } from "../support/otlp.js"

let receiver: Receiver
let server: TestServer
let tenant: { id: string; api_key: string }

beforeAll(async () => {
  receiver = startReceiver()
  server = await startServer({ otlpEndpoint: receiver.url, extraRoutes: defectRoute })
  tenant = await server.createTenant()
})
afterAll(async () => {
  await server.close()
  receiver.stop()
})

const spanWith = (predicate: (span: ReceivedSpan) => boolean) =>
  eventually(async () => receiver.spans().find(predicate), 5000)

describe("server spans", () => {
  test("a 200 read: named by route template, attributes, status unset, a child database span", async () => {
    const created = (await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }
    const response = await server.fetch(`/v1/sessions/${created.id}`, withKey(tenant.api_key))
    expect(response.status).toBe(200)
    const traceId = response.headers.get("x-trace-id")
    expect(traceId).toMatch(/^[0-9a-f]{32}$/)

    const span = await spanWith((span) => span.traceId === traceId && span.kind === 2)
    expect(span.name).toBe("GET /v1/sessions/:id")
    expect(attribute(span, "http.request.method")).toBe("GET")
    expect(attribute(span, "http.route")).toBe("/v1/sessions/:id")
    expect(attribute(span, "http.response.status_code")).toBe(200)
    expect(span.status.code).toBe(0)

    const child = await spanWith((candidate) => candidate.traceId === traceId && candidate.name === "db.sessions.find")
    expect(child.parentSpanId).toBeDefined()
    const ancestors = receiver.spans().filter((candidate) => candidate.traceId === traceId)
    // The database span hangs below the server span (through the service's own span).
    let parent = ancestors.find((candidate) => candidate.spanId === child.parentSpanId)
    while (parent !== undefined && parent.spanId !== span.spanId) {
      const parentOf: string | undefined = parent.parentSpanId
      parent = ancestors.find((candidate) => candidate.spanId === parentOf)
    }
    expect(parent?.spanId).toBe(span.spanId)
  })

  test("a message post's write is a group-commit span linked to the post's trace, with the database span below it", async () => {
    const created = (await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }
    const response = await server.fetch(`/v1/sessions/${created.id}/messages`, withKey(tenant.api_key, { method: "POST", body: JSON.stringify({ agent_id: "a", content: "traced" }) }))
    expect(response.status).toBe(201)
    const traceId = response.headers.get("x-trace-id")
    type Linked = ReceivedSpan & { readonly links?: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }> }
    const batch = (await spanWith((span) =>
      span.name === "GroupCommit.messages.append" && ((span as Linked).links ?? []).some((link) => link.traceId === traceId))) as Linked
    expect(batch.parentSpanId ?? "").toBe("")
    expect(attribute(batch, "bulwark.batch.size")).toBeGreaterThanOrEqual(1)
    const linked = (batch.links ?? []).find((link) => link.traceId === traceId)!
    expect(receiver.spans().some((span) => span.spanId === linked.spanId && span.traceId === traceId)).toBe(true)
    const write = await spanWith((span) => span.traceId === batch.traceId && span.name.startsWith("db.messages.append"))
    expect(write.parentSpanId).toBe(batch.spanId)
  })

  test("a 404: status unset, error.type and error.id match the problem", async () => {
    const response = await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key))
    const traceId = response.headers.get("x-trace-id")
    const problem = await expectProblem(response, 404, "SESSION_NOT_FOUND")
    const span = await spanWith((span) => span.traceId === traceId && span.kind === 2)
    expect(span.status.code).toBe(0)
    expect(attribute(span, "http.response.status_code")).toBe(404)
    expect(attribute(span, "error.type")).toBe("NotFound")
    expect(attribute(span, "error.id")).toBe(problem.error_id)
  })

  test("a 500: status ERROR with an exception event", async () => {
    const response = await server.fetch("/__test/defect")
    const traceId = response.headers.get("x-trace-id")
    const problem = await expectProblem(response, 500, "INTERNAL_ERROR")
    const span = await spanWith((span) => span.traceId === traceId && span.kind === 2)
    expect(span.status.code).toBe(2)
    expect(attribute(span, "error.type")).toBe("Internal")
    expect(attribute(span, "error.id")).toBe(problem.error_id)
    expect(span.events.some((event) => event.name === "exception")).toBe(true)
  })

  test("an incoming traceparent is honoured and the trace id returned", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    const parentId = "00f067aa0ba902b7"
    const response = await server.fetch("/health/live", { headers: { traceparent: `00-${traceId}-${parentId}-01` } })
    expect(response.headers.get("x-trace-id")).toBe(traceId)
    const span = await spanWith((span) => span.traceId === traceId && span.kind === 2)
    expect(span.parentSpanId).toBe(parentId)
    expect(span.name).toBe("GET /health/live")
  })
})

describe("metrics", () => {
  test("the HTTP duration histogram and the error counter arrive over OTLP", async () => {
    await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key))
    const names = await eventually(async () => {
      const names = receiver.metricNames()
      return names.has("http.server.request.duration") && names.has("bulwark_errors_total") ? names : undefined
    }, 5000)
    expect(names.has("http.server.request.duration")).toBe(true)
  })

  test("/metrics serves Prometheus text to the admin token only", async () => {
    await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(tenant.api_key)), 404, "SESSION_NOT_FOUND")
    const response = await server.admin("/metrics")
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toStartWith("text/plain")
    const text = await response.text()
    expect(text).toMatch(/^bulwark_errors_total\{code="SESSION_NOT_FOUND",status="404"\} [1-9]\d*$/m)
    expect(text).toContain("# TYPE http_server_request_duration histogram")
    expect(text).toMatch(/http_server_request_duration_bucket\{.*http_route="\/v1\/sessions\/:id".*le="0\.005"\}/)
    expect(text).toMatch(/http_server_request_duration_bucket\{.*le="\+Inf"\}/)
    await expectProblem(await server.fetch("/metrics"), 401, "AUTH_MISSING")
    await expectProblem(await server.fetch("/metrics", withKey(tenant.api_key)), 403, "FORBIDDEN")
  })
})

describe("an unwell collector", () => {
  test("a receiver answering 503, or nothing listening, never fails or slows a request", async () => {
    const unavailable = startReceiver()
    unavailable.mode = "unavailable"
    const deadPort = (() => {
      const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() })
      const port = probe.port
      probe.stop(true)
      return port
    })()
    for (const endpoint of [unavailable.url, `http://127.0.0.1:${deadPort}`]) {
      const unwell = await startServer({ otlpEndpoint: endpoint })
      try {
        const owner = await unwell.createTenant()
        let slowest = 0
        // Long enough for several export attempts (every 100/200 ms) to fail.
        const until = Date.now() + 600
        while (Date.now() < until) {
          const started = performance.now()
          const response = await unwell.fetch("/v1/sessions", withKey(owner.api_key))
          expect(response.status).toBe(200)
          await response.body?.cancel()
          slowest = Math.max(slowest, performance.now() - started)
        }
        // An export that held requests up would take its whole 5 s timeout; a busy machine takes far less.
        expect(slowest).toBeLessThan(1000)
      } finally {
        const closing = performance.now()
        await unwell.close()
        // Shutdown flushes once more, bounded by the exporter's shutdown timeout (500 ms in tests);
        // the rest is closing the database pool, which on a busy machine can take a second or two.
        expect(performance.now() - closing).toBeLessThan(4000)
      }
    }
    unavailable.stop()
  }, 20_000)
})
