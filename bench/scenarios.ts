/** The four scenarios of SPEC §9: which request, against which servers, and the status a right answer has. */
import type { Target, TargetId } from "./targets.js"
import type { WrkRequest } from "./wrk.js"

export type ScenarioId = "hot-read" | "hot-read-redis-down" | "not-found" | "write"

export interface Scenario {
  readonly id: ScenarioId
  readonly title: string
  readonly targets: ReadonlyArray<TargetId>
  /** Only responses with this status count as throughput. */
  readonly expectedStatus: number
  readonly request: (target: Target) => WrkRequest
}

const ALL_SERVERS: ReadonlyArray<TargetId> = ["bulwark", "raw", "hono"]

const hotRead = (target: Target): WrkRequest => ({
  url: `${target.baseUrl}/v1/sessions/${target.sessionId}`,
  method: "GET",
  apiKey: target.apiKey
})

export const MESSAGE_BODY = JSON.stringify({ agent_id: "bench", content: "hello" })

/** `missingSessionId` is a fresh random UUID: no target has a session with it. */
export const scenarios = (missingSessionId: string): ReadonlyArray<Scenario> => [
  {
    id: "hot-read",
    title: "hot read `GET /v1/sessions/{id}`",
    targets: ALL_SERVERS,
    expectedStatus: 200,
    request: hotRead
  },
  {
    id: "hot-read-redis-down",
    title: "hot read, cache's Redis unreachable",
    targets: ["bulwark-redis-down"],
    expectedStatus: 200,
    request: hotRead
  },
  {
    id: "not-found",
    title: "404 `GET /v1/sessions/{unknown id}`",
    targets: ALL_SERVERS,
    expectedStatus: 404,
    request: (target) => ({ url: `${target.baseUrl}/v1/sessions/${missingSessionId}`, method: "GET", apiKey: target.apiKey })
  },
  {
    id: "write",
    title: "write `POST /v1/sessions/{id}/messages`",
    targets: ALL_SERVERS,
    expectedStatus: 201,
    request: (target) => ({
      url: `${target.baseUrl}/v1/sessions/${target.sessionId}/messages`,
      method: "POST",
      apiKey: target.apiKey,
      body: MESSAGE_BODY
    })
  }
]
