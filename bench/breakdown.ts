/**
 * Where a hot read's time goes, in process and one request at a time: the whole hot route, then
 * each piece alone (the boundary, the server span, the platform's response handling, the caller's
 * authentication, the session read, the rate limiter) and a few Effect primitives they are built
 * from. `bun bench/breakdown.ts`; the numbers explain the distance to the references in latest.md.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Fiber, Layer, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Auth } from "../services/Auth.js"
import { ErrorLedger } from "../services/ErrorLedger.js"
import { NotFound } from "../src/errors.js"
import { RateLimiter } from "../services/RateLimiter.js"
import { Sessions } from "../services/Sessions.js"
import { Tenants } from "../services/Tenants.js"
import { Api } from "../src/Api.js"
import type { AppConfigShape } from "../src/Config.js"
import type { CreateSession } from "../src/domain/Session.js"
import { problemBoundary } from "../src/http/Boundary.js"
import { countAgainst } from "../src/http/RateLimit.js"
import * as HotRoutes from "../src/http/HotRoutes.js"
import { serverScheduler } from "../src/Scheduler.js"
import { ServicesLive } from "../src/Server.js"
import * as Logging from "../src/telemetry/Logging.js"
import { routeTemplates, serverSpan } from "../src/telemetry/ServerSpan.js"

const ROUNDS = 5000
const directory = mkdtempSync(join(tmpdir(), "bulwark-breakdown-"))
const config: AppConfigShape = {
  port: 0,
  host: "127.0.0.1",
  database: { _tag: "SqliteFile", filename: join(directory, "bulwark.db") },
  adminToken: Option.some(Redacted.make("a".repeat(40))),
  jwtSecret: Option.some(Redacted.make("j".repeat(40))),
  redisUrl: Option.none(),
  cacheRequired: false,
  rateLimit: { limit: 1_000_000_000, windowMillis: 1000 },
  requestTimeoutMillis: 10_000,
  errorRetentionDays: 30,
  telemetry: { endpoint: Option.none(), protocol: "http/json", serviceName: "bulwark", traceExportIntervalMillis: 5000, metricExportIntervalMillis: 60000 },
  logLevel: LogLevel.Error,
  logFormat: "json"
}
const runtime = ManagedRuntime.make(ServicesLive({ config }).pipe(Layer.provide(Logging.layer({ format: "json", level: LogLevel.Error }))))

const microseconds = async (run: () => Promise<unknown>) => {
  for (let i = 0; i < ROUNDS / 5; i++) await run()
  const started = performance.now()
  for (let i = 0; i < ROUNDS; i++) await run()
  return ((performance.now() - started) * 1000) / ROUNDS
}
const effectMicroseconds = async (effect: Effect.Effect<unknown, unknown, never>) => {
  const repeated = Effect.gen(function*() {
    for (let i = 0; i < ROUNDS; i++) yield* effect
  })
  await runtime.runPromise(Effect.withScheduler(repeated, serverScheduler))
  const started = performance.now()
  await runtime.runPromise(Effect.withScheduler(repeated, serverScheduler))
  return ((performance.now() - started) * 1000) / ROUNDS
}

try {
  const tenant = await runtime.runPromise(Effect.flatMap(Tenants, (tenants) => tenants.createTenant("breakdown")))
  const principal = await runtime.runPromise(Effect.flatMap(Auth, (auth) => auth.authenticateKey(Redacted.make(tenant.api_key))))
  const session = await runtime.runPromise(Effect.flatMap(Sessions, (sessions) => sessions.create(principal.tenantId, {} as CreateSession)))
  const routeOf = routeTemplates(Api)
  // On the scheduler the server runs every fiber on (its fibers inherit it from here).
  const routes = await runtime.runPromise(Effect.withScheduler(HotRoutes.make({ requestTimeoutMillis: 10_000, routeOf }), serverScheduler))
  const server = { requestIP: () => ({ address: "127.0.0.1", family: "IPv4", port: 1 }) } as never
  const hotRead = (id: string) => () => {
    const request = Object.assign(new Request(`http://localhost/v1/sessions/${id}`, { headers: { authorization: `Bearer ${tenant.api_key}` } }), {
      params: { id }
    })
    return routes["/v1/sessions/:id"].GET(request, server)
  }
  const notFound = new NotFound({ code: "SESSION_NOT_FOUND", detail: "No session." })
  const boundary = await runtime.runPromise(problemBoundary({ requestTimeoutMillis: 10_000 }))
  const response = HttpServerResponse.unsafeJson({})
  const asRequest = <A, E>(effect: Effect.Effect<A, E, HttpServerRequest.HttpServerRequest>) =>
    Effect.suspend(() => Effect.provideService(effect, HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(new Request("http://localhost/x"))))
  const rows: Array<[string, number]> = [
    ["whole hot route (GET /v1/sessions/{id}, 200)", await microseconds(hotRead(session.id))],
    ["whole hot route, a missing session (404)", await microseconds(hotRead(crypto.randomUUID()))],
    ["  record the 404 in the ledger (written later, in batches)", await effectMicroseconds(Effect.flatMap(ErrorLedger, (ledger) => ledger.record(notFound, { route: "/v1/sessions/{id}" })))],
    ["  boundary (request id, deadline, rate-limit headers) around a constant", await effectMicroseconds(asRequest(boundary(Effect.succeed(response))))],
    ["  server span and duration metric around a constant (the HttpApi routes' version)", await effectMicroseconds(asRequest(serverSpan(routeOf)(Effect.succeed(response))))],
    ["  authenticate the API key (kept in process)", await effectMicroseconds(Effect.flatMap(Auth, (auth) => auth.authenticateKey(Redacted.make(tenant.api_key))))],
    ["  read the session (cache hit)", await effectMicroseconds(Effect.flatMap(Sessions, (sessions) => sessions.get(principal.tenantId, session.id)))],
    ["  count the request (rate limiter)", await effectMicroseconds(Effect.flatMap(RateLimiter, (limiter) => countAgainst(limiter, "key:breakdown")))],
    ["Effect primitive: Effect.void", await effectMicroseconds(Effect.void)],
    ["Effect primitive: withSpan", await effectMicroseconds(Effect.withSpan(Effect.void, "span"))],
    ["Effect primitive: timeoutFail (forks the racing fibers)", await effectMicroseconds(Effect.timeoutFail(Effect.void, { duration: 1000, onTimeout: () => "late" }))],
    ["Effect primitive: fork and await one fiber (the boundary's deadline)", await effectMicroseconds(Effect.flatMap(Effect.fork(Effect.void), Fiber.await))]
  ]
  console.log("| piece | µs per call |\n| --- | ---: |")
  for (const [name, micros] of rows) console.log(`| ${name} | ${micros.toFixed(1)} |`)
} finally {
  await runtime.dispose()
  rmSync(directory, { recursive: true, force: true })
}
