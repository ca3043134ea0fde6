/** GET /v1/admin/rates: requests and error responses per minute over the last hour (the console's chart). */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { expectProblem, startServer, type TestServer, withKey } from "../support/server.js"

interface Point {
  minute: string
  requests: number
  errors: number
  server_errors: number
}

let server: TestServer

beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.close())

const rates = async (): Promise<Array<Point>> => {
  const response = await server.admin("/v1/admin/rates")
  expect(response.status).toBe(200)
  return ((await response.json()) as { data: Array<Point> }).data
}

const sum = (points: ReadonlyArray<Point>, field: "requests" | "errors" | "server_errors") => points.reduce((total, point) => total + point[field], 0)

test("counts each request and each error response in the current minute, one point per minute of the last hour", async () => {
  const before = await rates()
  const { api_key } = await server.createTenant()
  const ok = await server.fetch("/v1/sessions", withKey(api_key))
  expect(ok.status).toBe(200)
  for (let i = 0; i < 3; i++) await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(api_key)), 404, "SESSION_NOT_FOUND")
  const after = await rates()

  expect(after).toHaveLength(60)
  const minutes = after.map((point) => Date.parse(point.minute))
  expect(minutes.every((minute, i) => minute % 60_000 === 0 && (i === 0 || minute - minutes[i - 1]! === 60_000))).toBe(true)
  expect(Date.now() - minutes.at(-1)!).toBeLessThan(60_000 + 5_000)
  // This process may serve other tests meanwhile: at least ours are counted.
  expect(sum(after, "requests") - sum(before, "requests")).toBeGreaterThanOrEqual(1 + 1 + 3 + 1)
  expect(sum(after, "errors") - sum(before, "errors")).toBeGreaterThanOrEqual(3)
})

test("is for operators only, and in the OpenAPI document", async () => {
  await expectProblem(await server.fetch("/v1/admin/rates"), 401, "AUTH_MISSING")
  const spec = (await (await server.fetch("/openapi.json")).json()) as { paths: Record<string, any> }
  expect(spec.paths["/v1/admin/rates"]?.get.responses["200"]).toBeDefined()
  expect(spec.paths["/v1/console/session"]?.post.security).toEqual([])
  expect(spec.paths["/v1/console/session"]?.get.security).toEqual([{ consoleSession: [] }, { adminToken: [] }])
  expect(Object.keys(spec.paths["/v1/console/session"] ?? {}).sort()).toEqual(["delete", "get", "post"])
})
