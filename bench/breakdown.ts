/**
 * Where a request's time goes, in process and one request at a time: whole requests through the
 * executor (a hot read, a 404, a message post), then pieces alone (the ledger, the caller's
 * authentication, the session read, the rate limiter) and a few Effect primitives they are built
 * from. `bun bench/breakdown.ts`; the numbers explain the distance to the references in latest.md.
 */
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
import { countAgainst } from "../src/http/RateLimit.js"
import * as Executor from "../src/http/Executor.js"
import { serverScheduler } from "../src/Scheduler.js"
import { HandlersAndAuthLive, ServicesLive } from "../src/Server.js"
import * as Logging from "../src/telemetry/Logging.js"

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
const runtime = ManagedRuntime.make(
  HandlersAndAuthLive.pipe(
    Layer.provideMerge(ServicesLive({ config })),
    Layer.provide(Logging.layer({ format: "json", level: LogLevel.Error }))
  )
)

const microseconds = async (run: () => unknown) => {
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
  // On the scheduler the server runs every fiber on (its fibers inherit it from here).
  const executor = await runtime.runPromise(Effect.withScheduler(Executor.make(Api, { requestTimeoutMillis: 10_000 }), serverScheduler))
  const server = { requestIP: () => ({ address: "127.0.0.1", family: "IPv4", port: 1 }) } as never
  const hotRead = (id: string) => () =>
    executor.fetch(new Request(`http://localhost/v1/sessions/${id}`, { headers: { authorization: `Bearer ${tenant.api_key}` } }), server)
  let posted = 0
  const post = async () => {
    const body = JSON.stringify({ agent_id: "breakdown", content: `message ${++posted}` })
    // With its length, as a client sends it: the edge reads a body only when one is declared.
    const response = await executor.fetch(
      new Request(`http://localhost/v1/sessions/${session.id}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.api_key}`, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) },
        body
      }),
      server
    )
    if (response.status !== 201) throw new Error(`a post answered ${response.status}: ${await response.text()}`)
  }
  /** CPU per post with `inFlight` posts outstanding at all times, as under load (they are group-committed). */
  const concurrentPosts = async (inFlight: number) => {
    const run = async (count: number) => {
      let next = 0
      await Promise.all(Array.from({ length: inFlight }, async () => {
        while (next++ < count) await post()
      }))
    }
    await run(ROUNDS / 5)
    const before = process.cpuUsage()
    await run(ROUNDS)
    const used = process.cpuUsage(before)
    return (used.user + used.system) / ROUNDS
  }
  const notFound = new NotFound({ code: "SESSION_NOT_FOUND", detail: "No session." })
  const rows: Array<[string, number]> = [
    ["whole request: hot read (GET /v1/sessions/{id}, 200)", await microseconds(hotRead(session.id))],
    ["whole request: a missing session (404)", await microseconds(hotRead(crypto.randomUUID()))],
    ["whole request: a message post (201)", await microseconds(post)],
    ["whole request: message posts, 32 in flight (CPU per post)", await concurrentPosts(32)],
    ["  record the 404 in the ledger (written later, in batches)", await effectMicroseconds(Effect.flatMap(ErrorLedger, (ledger) => ledger.record(notFound, { route: "/v1/sessions/{id}" })))],
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
