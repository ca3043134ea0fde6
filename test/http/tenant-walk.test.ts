/**
 * Tenant isolation as a property of the API: every route under a session, as documented in
 * /openapi.json, answers 404 for another tenant's session, and leaves it untouched.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

let server: TestServer

beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.close())

/** A valid body for each route that takes one, so validation passes and the lookup is what answers. */
const BODIES: Record<string, unknown> = {
  "POST /v1/sessions/{id}/messages": { agent_id: "planner", content: "hello" },
  "PUT /v1/sessions/{id}/memory/{key}": { value: { plan: 1 } }
}

test("tenant B walking every session route with tenant A's session id gets 404 SESSION_NOT_FOUND", async () => {
  const a = await server.createTenant()
  const b = await server.createTenant()
  const created = (await (await server.fetch("/v1/sessions", withKey(a.api_key, { method: "POST", body: JSON.stringify({ title: "A's" }) }))).json()) as { id: string }

  const spec = (await (await server.fetch("/openapi.json")).json()) as { paths: Record<string, Record<string, unknown>> }
  const routes = Object.entries(spec.paths)
    .filter(([path]) => path.startsWith("/v1/sessions/{id}"))
    .flatMap(([path, methods]) => Object.keys(methods).map((method) => ({ method: method.toUpperCase(), path })))
  expect(routes.length).toBeGreaterThanOrEqual(2)

  for (const { method, path } of routes) {
    const routeKey = `${method} ${path}`
    const hasBody = method === "POST" || method === "PUT" || method === "PATCH"
    if (hasBody && !(routeKey in BODIES)) throw new Error(`add a valid body for ${routeKey} to this walk`)
    const url = path.replace("{id}", created.id).replace(/\{[^}]+\}/g, "some-key")
    const response = await server.fetch(url, withKey(b.api_key, { method, ...(hasBody ? { body: JSON.stringify(BODIES[routeKey]) } : {}) }))
    await expectProblem(response, 404, "SESSION_NOT_FOUND").catch((error: Error) => {
      throw new Error(`${routeKey}: ${error.message}`)
    })
  }
  // Untouched for its owner: no message, no memory key.
  expect(await (await server.fetch(`/v1/sessions/${created.id}`, withKey(a.api_key))).json()).toMatchObject({ title: "A's" })
  expect(await (await server.fetch(`/v1/sessions/${created.id}/messages`, withKey(a.api_key))).json()).toEqual({ data: [], next_after: null })
  expect(await (await server.fetch(`/v1/sessions/${created.id}/memory`, withKey(a.api_key))).json()).toEqual({ data: [] })
})
