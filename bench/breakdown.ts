/**
 * Where a request's time goes, in process and one request at a time: whole requests through the
 * executor (a hot read, a 404, a message post), then pieces alone (the ledger, the caller's
 * authentication, the session read, the rate limiter) and a few Effect primitives they are built
 * from. `bun bench/breakdown.ts > breakdown.log`; the numbers explain the distance to the
 * references in latest.md.
 *
 * As users run Bulwark: the default log level (`LOG_LEVEL` unset), so each 404 writes its log line
 * (to stdout, which the command above sends to a file); the table goes to stderr. Whole requests
 * give the event loop a turn every `TURN` requests, as a server between reads from its sockets, so
 * the ledger's writer runs inside the measured time: a 404's figure includes its row's insert.
 * Beside the CPU, each row counts the Effect operations per call, which do not vary between runs.
 */
import { Effect, Fiber, Layer, ManagedRuntime, Option, Redacted } from "effect"
import type * as Scheduler from "effect/Scheduler"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Auth } from "../services/Auth.js"
import { ErrorLedger } from "../services/ErrorLedger.js"
import { ErrorsRepo, type LedgerRow } from "../services/ErrorsRepo.js"
import { NotFound } from "../src/errors.js"
import { RateLimiter } from "../services/RateLimiter.js"
import { Sessions } from "../services/Sessions.js"
import { Tenants } from "../services/Tenants.js"
import { Api } from "../src/Api.js"
import { type AppConfigShape, logSettings } from "../src/Config.js"
import type { CreateSession } from "../src/domain/Session.js"
import { countAgainst } from "../src/http/RateLimit.js"
import * as Executor from "../src/http/Executor.js"
import { ServerScheduler } from "../src/Scheduler.js"
import { HandlersAndAuthLive, ServicesLive } from "../src/Server.js"
import * as Logging from "../src/telemetry/Logging.js"

const ROUNDS = 5000
/** Requests between two turns of the event loop (the ledger's writer and timers run there). */
const TURN = 32
/** The log level and format `bun start` uses when nothing is configured. */
const logs = await Effect.runPromise(logSettings)
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
  logLevel: logs.level,
  logFormat: logs.format
}
const runtime = ManagedRuntime.make(
  HandlersAndAuthLive.pipe(
    Layer.provideMerge(ServicesLive({ config })),
    Layer.provide(Logging.layer(logs))
  )
)

/**
 * The server's scheduler, counting the operations run on it: a fiber asks `shouldYield` once before
 * each operation. Unlike CPU time, the count is the same from run to run, so it tells a change that
 * removes steps from one that does not, on a machine too noisy for a few microseconds.
 */
class CountingScheduler extends ServerScheduler {
  operations = 0
  override shouldYield(fiber: { readonly currentOpCount: number }): number | false {
    this.operations += 1
    return super.shouldYield(fiber)
  }
}
const scheduler = new CountingScheduler()

/**
 * CPU per call, and Effect operations per call: those of the fibers the server starts, not of the
 * background fibers the work is handed to (a group commit's batch, the ledger's writer).
 */
interface Cost {
  readonly micros: number
  readonly operations: number
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))
/** CPU time of this process (user + system), which a machine busy with other work disturbs less than the wall clock. */
const cpuMicros = () => {
  const { system, user } = process.cpuUsage()
  return system + user
}
const microseconds = async (run: () => unknown): Promise<Cost> => {
  for (let i = 0; i < ROUNDS / 5; i++) {
    await run()
    if (i % TURN === 0) await nextTurn()
  }
  // What the warm-up left behind (a batch of ledger rows) is written before the clock starts.
  await Bun.sleep(50)
  const started = cpuMicros()
  const operations = scheduler.operations
  for (let i = 0; i < ROUNDS; i++) {
    await run()
    if (i % TURN === 0) await nextTurn()
  }
  // The last rows' batch is written (the writer lingers 20 ms) before the clock stops.
  await Bun.sleep(50)
  return { micros: (cpuMicros() - started) / ROUNDS, operations: (scheduler.operations - operations) / ROUNDS }
}
const effectMicroseconds = async (effect: Effect.Effect<unknown, unknown, never>): Promise<Cost> => {
  const repeated = Effect.gen(function*() {
    for (let i = 0; i < ROUNDS; i++) {
      yield* effect
      if (i % TURN === 0) yield* Effect.promise(nextTurn)
    }
  })
  await runtime.runPromise(Effect.withScheduler(repeated, scheduler))
  await Bun.sleep(50)
  const started = cpuMicros()
  const operations = scheduler.operations
  await runtime.runPromise(Effect.withScheduler(repeated, scheduler))
  await Bun.sleep(50)
  return { micros: (cpuMicros() - started) / ROUNDS, operations: (scheduler.operations - operations) / ROUNDS }
}

try {
  const tenant = await runtime.runPromise(Effect.flatMap(Tenants, (tenants) => tenants.createTenant("breakdown")))
  const principal = await runtime.runPromise(Effect.flatMap(Auth, (auth) => auth.authenticateKey(Redacted.make(tenant.api_key))))
  const session = await runtime.runPromise(Effect.flatMap(Sessions, (sessions) => sessions.create(principal.tenantId, {} as CreateSession)))
  // On the scheduler the server runs every fiber on (its fibers inherit it from here).
  const executor = await runtime.runPromise(Effect.withScheduler(Executor.make(Api, { requestTimeoutMillis: 10_000 }), scheduler))
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
    const operations = scheduler.operations
    await run(ROUNDS)
    const used = process.cpuUsage(before)
    return { micros: (used.user + used.system) / ROUNDS, operations: (scheduler.operations - operations) / ROUNDS }
  }
  // The rows a 404 storm writes, straight through the repository (no queue, no linger).
  const insertMicroseconds = async (batch: number) => {
    const rows = (n: number): Array<LedgerRow> =>
      Array.from({ length: n }, () => ({
        error_id: Bun.randomUUIDv7(),
        occurred_at: new Date().toISOString(),
        type: "http",
        code: "SESSION_NOT_FOUND",
        status: 404,
        message: "No session 0190d3c2-1b2a-7c3d-8e4f-0123456789ab exists for this tenant.",
        stack: null,
        fingerprint: "812838c077022501",
        severity: "warning",
        tenant_id: principal.tenantId,
        session_id: "0190d3c2-1b2a-7c3d-8e4f-0123456789ab",
        request_id: crypto.randomUUID(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        method: "GET",
        route: "/v1/sessions/{id}",
        user_agent: "wrk",
        request_payload: null,
        request_payload_kind: null
      }))
    const insert = (n: number) => runtime.runPromise(Effect.flatMap(ErrorsRepo, (repo) => repo.insertBatch(rows(n))))
    await insert(batch)
    const batches = Math.ceil(ROUNDS / batch)
    const started = cpuMicros()
    for (let i = 0; i < batches; i++) await insert(batch)
    // Run on the runtime's own scheduler: no operations counted.
    return { micros: (cpuMicros() - started) / (batches * batch), operations: Number.NaN }
  }
  const notFound = new NotFound({ code: "SESSION_NOT_FOUND", detail: "No session." })
  const rows: Array<[string, Cost]> = [
    ["whole request: hot read (GET /v1/sessions/{id}, 200)", await microseconds(hotRead(session.id))],
    ["whole request: a missing session (404)", await microseconds(hotRead(crypto.randomUUID()))],
    ["whole request: a message post (201)", await microseconds(post)],
    ["whole request: message posts, 32 in flight (CPU per post)", await concurrentPosts(32)],
    ["  record the 404 in the ledger (and its share of the batched insert)", await effectMicroseconds(Effect.flatMap(ErrorLedger, (ledger) => ledger.record(notFound, { route: "/v1/sessions/{id}" })))],
    ["  insert one ledger row, in batches of 200", await insertMicroseconds(200)],
    ["  authenticate the API key (kept in process)", await effectMicroseconds(Effect.flatMap(Auth, (auth) => auth.authenticateKey(Redacted.make(tenant.api_key))))],
    ["  read the session (cache hit)", await effectMicroseconds(Effect.flatMap(Sessions, (sessions) => sessions.get(principal.tenantId, session.id)))],
    ["  count the request (rate limiter)", await effectMicroseconds(Effect.flatMap(RateLimiter, (limiter) => countAgainst(limiter, "key:breakdown")))],
    ["Effect primitive: Effect.void", await effectMicroseconds(Effect.void)],
    ["Effect primitive: withSpan", await effectMicroseconds(Effect.withSpan(Effect.void, "span"))],
    ["Effect primitive: timeoutFail (forks the racing fibers)", await effectMicroseconds(Effect.timeoutFail(Effect.void, { duration: 1000, onTimeout: () => "late" }))],
    ["Effect primitive: fork and await one fiber (the boundary's deadline)", await effectMicroseconds(Effect.flatMap(Effect.fork(Effect.void), Fiber.await))]
  ]
  console.error(`log level ${logs.level.label}, format ${logs.format}\n| piece | µs of CPU per call | Effect operations per call |\n| --- | ---: | ---: |`)
  for (const [name, { micros, operations }] of rows) {
    console.error(`| ${name} | ${micros.toFixed(1)} | ${Number.isNaN(operations) ? "—" : operations.toFixed(1)} |`)
  }
} finally {
  await runtime.dispose()
  rmSync(directory, { recursive: true, force: true })
}
