/**
 * The floor on PostgreSQL: `Bun.serve` routes and `Bun.SQL`, nothing else; the same work per request
 * as `raw.ts` with the store of `pgStore.ts`.
 *
 *   PORT=3003 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_raw bun bench/reference/rawPostgres.ts
 */
import { openPgStore, pgServerEnv } from "./pgStore.js"
import { bearerOf, type Caller, isUuid, mayPostAs, parseNewMessage, problemBody } from "./store.js"

const { port, databaseUrl } = pgServerEnv()
const store = openPgStore(databaseUrl)

const problem = (status: number, code: string, title: string, detail: string): Response =>
  Response.json(problemBody(status, code, title, detail), { status, headers: { "content-type": "application/problem+json" } })

const unauthenticated = () => problem(401, "AUTH_INVALID", "Authentication failed", "The credential is not valid.")
const invalidId = () => problem(400, "VALIDATION_FAILED", "Validation failed", "The id must be a UUID.")
const sessionNotFound = (id: string) =>
  problem(404, "SESSION_NOT_FOUND", "Session not found", `No session ${id} exists for this tenant.`)

const authenticate = async (request: Request): Promise<Caller | null> => {
  const apiKey = bearerOf(request.headers.get("authorization"))
  return apiKey === null ? null : store.callerOf(apiKey)
}

const getSession = async (request: Bun.BunRequest<"/v1/sessions/:id">): Promise<Response> => {
  const caller = await authenticate(request)
  if (caller === null) return unauthenticated()
  const id = request.params.id
  if (!isUuid(id)) return invalidId()
  const session = await store.findSession(caller.tenantId, id.toLowerCase())
  return session === null ? sessionNotFound(id) : Response.json(session)
}

const postMessage = async (request: Bun.BunRequest<"/v1/sessions/:id/messages">): Promise<Response> => {
  const caller = await authenticate(request)
  if (caller === null) return unauthenticated()
  const id = request.params.id
  if (!isUuid(id)) return invalidId()
  const body: unknown = await request.json().catch(() => undefined)
  const message = parseNewMessage(body)
  if (message === null) return problem(400, "VALIDATION_FAILED", "Validation failed", "The body must be { agent_id, content, metadata? }.")
  if (!mayPostAs(caller, message.agentId)) return problem(403, "FORBIDDEN", "Forbidden", "This key may not post as that agent.")
  const stored = await store.appendMessage(caller.tenantId, id.toLowerCase(), message)
  return stored === null ? sessionNotFound(id) : Response.json(stored, { status: 201 })
}

Bun.serve({
  port,
  hostname: "127.0.0.1",
  routes: {
    "/health/ready": { GET: () => Response.json({ status: "ok" }) },
    "/v1/sessions/:id": { GET: getSession },
    "/v1/sessions/:id/messages": { POST: postMessage }
  },
  fetch: () => problem(404, "ROUTE_NOT_FOUND", "Route not found", "No route matches this method and path.")
})
