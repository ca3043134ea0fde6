/**
 * One pipeline for every route (`src/http/Executor.ts`): the checks run in `HttpApi`'s order on every
 * route, and a route that waits (any route, not only the hot read) is interrupted by a client that
 * leaves, which is recorded as a client abort and never rendered or ledgered.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { eventually, expectProblem, hangInterruptions, hangRoute, startServer, streamFibers, streamRoute, type TestServer, withKey } from "../support/server.js"

let server: TestServer
let key: string

beforeAll(async () => {
  server = await startServer({ extraRoutes: [...hangRoute, ...streamRoute] })
  key = (await server.createTenant()).api_key
})
afterAll(() => server.close())

/** How many requests of this route the duration histogram has seen with this status. */
const requestsWithStatus = async (route: string, status: number): Promise<number> => {
  const metrics = await (await server.admin("/metrics")).text()
  const line = metrics.split("\n").find((l) =>
    l.startsWith("http_server_request_duration_count{") && l.includes(`http_route="${route}"`) &&
    l.includes(`http_response_status_code="${status}"`)
  )
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe("the order of checks", () => {
  test("authentication comes before the path's decoding: a bad id without a credential is 401, with one 400 at /id", async () => {
    await expectProblem(await server.fetch("/v1/sessions/not-a-uuid"), 401, "AUTH_MISSING")
    const problem = await expectProblem(await server.fetch("/v1/sessions/not-a-uuid", withKey(key)), 400, "VALIDATION_FAILED")
    expect(problem.errors?.map((error) => error.pointer)).toEqual(["/id"])
  })

  test("the body rules come before authentication: a body that is not JSON is 415 whatever the credential", async () => {
    const response = await server.fetch("/v1/sessions", { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" })
    await expectProblem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
  })

  test("a write's body is decoded after authentication and refuses unknown fields, each at its pointer", async () => {
    const created = await (await server.fetch("/v1/sessions", withKey(key, { method: "POST", body: "{}" }))).json() as { id: string }
    const response = await server.fetch(`/v1/sessions/${created.id}/messages`, withKey(key, { method: "POST", body: JSON.stringify({ agent_id: "a", contnet: "x" }) }))
    const problem = await expectProblem(response, 400, "VALIDATION_FAILED")
    expect(problem.errors?.map((error) => error.pointer).sort()).toEqual(["/content", "/contnet"])
  })
})

describe("a client that leaves", () => {
  test("interrupts a waiting route's work: recorded as a client abort (499), with nothing rendered as a failure", async () => {
    const interruptedBefore = hangInterruptions.count
    const abortsBefore = await requestsWithStatus("/__test/hang", 499)
    const failuresBefore = await requestsWithStatus("/__test/hang", 500)
    const controller = new AbortController()
    const pending = fetch(`${server.url}/__test/hang`, { signal: controller.signal }).catch((error: unknown) => error)
    await Bun.sleep(50)
    controller.abort()
    expect(await pending).toBeInstanceOf(Error)
    await eventually(async () => (hangInterruptions.count > interruptedBefore ? true : undefined))
    expect(await eventually(async () => {
      const aborts = await requestsWithStatus("/__test/hang", 499)
      return aborts > abortsBefore ? aborts : undefined
    })).toBe(abortsBefore + 1)
    expect(await requestsWithStatus("/__test/hang", 500)).toBe(failuresBefore)
  })
})

describe("an answer that streams", () => {
  test("does not keep its request's fiber (its context, its span) alive while the client reads it", async () => {
    const STREAMS = 20
    const collectedBefore = streamFibers.collected
    const clients = await Promise.all(Array.from({ length: STREAMS }, async () => {
      const controller = new AbortController()
      const response = await fetch(`${server.url}/__test/stream`, { signal: controller.signal })
      expect(response.status).toBe(200)
      const reader = response.body!.getReader()
      expect((await reader.read()).done).toBe(false)
      return { controller, reader }
    }))
    try {
      // Every stream is still open: its fiber is done, and nothing of the request should hold it.
      const collected = await eventually(async () => {
        Bun.gc(true)
        await Bun.sleep(10)
        const count = streamFibers.collected - collectedBefore
        return count >= STREAMS / 2 ? count : undefined
      }, 5000)
      expect(collected).toBeGreaterThanOrEqual(STREAMS / 2)
    } finally {
      for (const client of clients) client.controller.abort()
    }
  })
})
