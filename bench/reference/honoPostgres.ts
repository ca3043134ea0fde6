/**
 * The peer framework on PostgreSQL: Hono on Bun with an auth middleware, as `hono.ts`, with the
 * `Bun.SQL` store of `pgStore.ts`.
 *
 *   PORT=3004 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_hono bun bench/reference/honoPostgres.ts
 */
import { Hono } from "hono"
import type { Context } from "hono"
import type { ContentfulStatusCode } from "hono/utils/http-status"
import { openPgStore, pgServerEnv } from "./pgStore.js"
import { bearerOf, type Caller, isUuid, mayPostAs, parseNewMessage, problemBody } from "./store.js"

const { port, databaseUrl } = pgServerEnv()
const store = openPgStore(databaseUrl)

const problem = (c: Context, status: ContentfulStatusCode, code: string, title: string, detail: string): Response =>
  c.json(problemBody(status, code, title, detail), status, { "content-type": "application/problem+json" })

const sessionNotFound = (c: Context, id: string) =>
  problem(c, 404, "SESSION_NOT_FOUND", "Session not found", `No session ${id} exists for this tenant.`)

const app = new Hono<{ Variables: { caller: Caller } }>()

app.get("/health/ready", (c) => c.json({ status: "ok" }))

app.use("/v1/*", async (c, next) => {
  const apiKey = bearerOf(c.req.header("authorization"))
  const caller = apiKey === null ? null : await store.callerOf(apiKey)
  if (caller === null) return problem(c, 401, "AUTH_INVALID", "Authentication failed", "The credential is not valid.")
  c.set("caller", caller)
  await next()
})

app.get("/v1/sessions/:id", async (c) => {
  const id = c.req.param("id")
  if (!isUuid(id)) return problem(c, 400, "VALIDATION_FAILED", "Validation failed", "The id must be a UUID.")
  const session = await store.findSession(c.get("caller").tenantId, id.toLowerCase())
  return session === null ? sessionNotFound(c, id) : c.json(session)
})

app.post("/v1/sessions/:id/messages", async (c) => {
  const id = c.req.param("id")
  if (!isUuid(id)) return problem(c, 400, "VALIDATION_FAILED", "Validation failed", "The id must be a UUID.")
  const body: unknown = await c.req.json().catch(() => undefined)
  const message = parseNewMessage(body)
  if (message === null) return problem(c, 400, "VALIDATION_FAILED", "Validation failed", "The body must be { agent_id, content, metadata? }.")
  const caller = c.get("caller")
  if (!mayPostAs(caller, message.agentId)) return problem(c, 403, "FORBIDDEN", "Forbidden", "This key may not post as that agent.")
  const stored = await store.appendMessage(caller.tenantId, id.toLowerCase(), message)
  return stored === null ? sessionNotFound(c, id) : c.json(stored, 201)
})

app.notFound((c) => problem(c, 404, "ROUTE_NOT_FOUND", "Route not found", "No route matches this method and path."))

Bun.serve({ port, hostname: "127.0.0.1", fetch: app.fetch })
