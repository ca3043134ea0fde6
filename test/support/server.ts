/**
 * A real Bulwark on a random port with a real, temporary SQLite file (or, under `test/postgres/`, a
 * fresh PostgreSQL database): the `MainLive` layer with the database swapped for a fresh one. Every
 * HTTP test talks to one of these.
 */
import { HttpServer, HttpServerResponse } from "@effect/platform"
import { type Duration, Effect, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import type { CacheBreakerOptions } from "../../layers/cache/Cache.js"
import type { DatabaseResilience } from "../../layers/database/Database.js"
import type { AppConfigShape } from "../../src/Config.js"
import type { ErrorRecord } from "../../src/domain/ErrorRecord.js"
import type { ExtraRoute } from "../../src/http/Executor.js"
import type { McpOptions } from "../../src/mcp/Endpoint.js"
import { MainLive } from "../../src/Server.js"
import { checkResponse } from "./contract.js"
import { faultMatrixOtlpEndpoint } from "./faultMatrix.js"
import { cloneDatabase, harness, TEST_POOL_SIZE } from "./postgres.js"

export interface TestServer {
  readonly url: string
  readonly adminToken: string
  /** The server's HMAC key, so tests can forge tokens it must refuse (or accept). */
  readonly jwtSecret: string
  readonly directory: string
  readonly databaseFile: string
  /** `DATABASE_URL` for another process (the CLI) on this server's database. */
  readonly databaseUrl: string
  readonly fetch: (path: string, init?: RequestInit) => Promise<Response>
  readonly admin: (path: string, init?: RequestInit) => Promise<Response>
  readonly createTenant: (name?: string) => Promise<{ id: string; api_key: string; api_key_id: string }>
  /** Exchanges an API key for an access token through `POST /v1/auth/token`. */
  readonly accessToken: (apiKey: string) => Promise<string>
  readonly close: (options?: { readonly keepFiles?: boolean }) => Promise<void>
}

export interface TestServerOptions {
  readonly sqliteBusyTimeoutMillis?: number
  readonly extraRoutes?: ReadonlyArray<ExtraRoute>
  readonly logLevel?: LogLevel.LogLevel
  /** Exports traces and metrics here (every 100/200 ms) when set. */
  readonly otlpEndpoint?: string
  readonly databaseResilience?: DatabaseResilience
  readonly requestTimeoutMillis?: number
  readonly redisUrl?: string
  readonly cacheRequired?: boolean
  readonly cacheResilience?: CacheBreakerOptions
  readonly memoryResilience?: DatabaseResilience
  /** How often event streams ping and check their session; 15 s by default, as in production. */
  readonly eventHeartbeat?: Duration.DurationInput
  /** Caps on open event streams, per key and per process (100 / 10000 when not given). */
  readonly streamCaps?: { readonly perKey: number; readonly total: number }
  /** Bun's idle timeout for connections, in seconds (10 by default, as in production). */
  readonly idleTimeoutSeconds?: number
  /** The burst of requests after which, once quiet, the heap is collected in full (10,000 and 2 s by default). */
  readonly collectAfterRequests?: { readonly threshold: number; readonly quiet: Duration.DurationInput }
  /**
   * Another server's database file (on PostgreSQL its database URL), to run a second instance on the
   * same data (it is not deleted on close).
   */
  readonly databaseFile?: string
  /** Where rate limits are counted, when not as the configuration implies. */
  readonly rateLimitStore?: "cache" | "database"
  /** Generous by default so that only the rate-limit tests meet it. */
  readonly rateLimit?: { readonly limit: number; readonly windowMillis: number }
  /** MCP session bounds and allowed origins. */
  readonly mcp?: McpOptions
  /** BULWARK_TRACE_URL. */
  readonly traceUrl?: string
  /** OTEL_TRACES_SAMPLER_ARG. */
  readonly traceSampleRatio?: number
}

/** How many times the work of `/__test/hang` was interrupted (its finalizer ran). */
export const hangInterruptions = { count: 0 }

/** How many times the work of `/__test/hang` began: a test waits for it rather than guessing how long a request takes to arrive. */
export const hangStarts = { count: 0 }

/** A route whose work never finishes unless interrupted; its start and its interruption are counted. */
export const hangRoute: ReadonlyArray<ExtraRoute> = [{
  method: "GET",
  path: "/__test/hang",
  handler: Effect.sync(() => hangStarts.count++).pipe(
    Effect.zipRight(Effect.never),
    Effect.onInterrupt(() => Effect.sync(() => hangInterruptions.count++))
  )
}]

/** Fibers of `streamRoute`'s requests that the engine has collected. */
export const streamFibers = { collected: 0 }
const streamFiberRegistry = new FinalizationRegistry<undefined>(() => void streamFibers.collected++)

/**
 * A route that answers, as an event stream does, after waiting (so it takes the executor's
 * asynchronous path) with a body that stays open until the client leaves; its request's fiber is
 * watched for collection.
 */
export const streamRoute: ReadonlyArray<ExtraRoute> = [{
  method: "GET",
  path: "/__test/stream",
  handler: Effect.gen(function*() {
    yield* Effect.sleep("1 millis")
    yield* Effect.withFiberRuntime((fiber) => Effect.sync(() => streamFiberRegistry.register(fiber, undefined)))
    const body = new ReadableStream<Uint8Array>({ start: (controller) => controller.enqueue(new TextEncoder().encode("open\n")) })
    return HttpServerResponse.raw(body, { contentType: "text/plain" })
  })
}]

/** A route that dies with a defect whose message and stack must never reach a client. */
export const defectRoute: ReadonlyArray<ExtraRoute> = [{
  method: "GET",
  path: "/__test/defect",
  handler: Effect.die(new Error("boom: SELECT secret FROM /var/lib/bulwark/internal.db"))
}]

export const startServer = async (options: TestServerOptions = {}): Promise<TestServer> => {
  const onPostgres = harness.dialect === "postgres"
  const directory = options.databaseFile === undefined || onPostgres ? mkdtempSync(join(tmpdir(), "bulwark-test-")) : dirname(options.databaseFile)
  const clone = onPostgres && options.databaseFile === undefined ? await cloneDatabase() : undefined
  const databaseFile = options.databaseFile ?? clone?.url ?? join(directory, "bulwark.db")
  const ownsFiles = options.databaseFile === undefined || onPostgres
  const adminToken = randomBytes(24).toString("base64url")
  const jwtSecret = randomBytes(32).toString("base64url")
  const config: AppConfigShape = {
    port: 0,
    host: "127.0.0.1",
    database: onPostgres
      ? { _tag: "Postgres", url: Redacted.make(databaseFile), poolSize: TEST_POOL_SIZE }
      : { _tag: "SqliteFile", filename: databaseFile },
    adminToken: Option.some(Redacted.make(adminToken)),
    jwtSecret: Option.some(Redacted.make(jwtSecret)),
    redisUrl: options.redisUrl === undefined ? Option.none() : Option.some(options.redisUrl),
    cacheRequired: options.cacheRequired ?? false,
    rateLimit: options.rateLimit ?? { limit: 100_000, windowMillis: 60_000 },
    requestTimeoutMillis: options.requestTimeoutMillis ?? 10_000,
    errorRetentionDays: 30,
    telemetry: {
      // While the fault matrix is recorded every server exports its spans, so each fault's span status is read, not assumed.
      endpoint: Option.fromNullable(options.otlpEndpoint ?? faultMatrixOtlpEndpoint()),
      protocol: "http/json",
      serviceName: "bulwark-test",
      traceExportIntervalMillis: 100,
      metricExportIntervalMillis: 200
    },
    logLevel: options.logLevel ?? LogLevel.None,
    logFormat: "json"
  }
  const runtime = ManagedRuntime.make(
    MainLive({
      config,
      ...(options.sqliteBusyTimeoutMillis === undefined ? {} : { sqliteBusyTimeoutMillis: options.sqliteBusyTimeoutMillis }),
      ...(options.extraRoutes === undefined ? {} : { extraRoutes: options.extraRoutes }),
      telemetryShutdownTimeout: "500 millis",
      ...(options.databaseResilience === undefined ? {} : { databaseResilience: options.databaseResilience }),
      ...(options.cacheResilience === undefined ? {} : { cacheResilience: options.cacheResilience }),
      ...(options.memoryResilience === undefined ? {} : { memoryResilience: options.memoryResilience }),
      ...(options.eventHeartbeat === undefined ? {} : { eventHeartbeat: options.eventHeartbeat }),
      ...(options.streamCaps === undefined ? {} : { streamCaps: options.streamCaps }),
      ...(options.rateLimitStore === undefined ? {} : { rateLimitStore: options.rateLimitStore }),
      ...(options.idleTimeoutSeconds === undefined ? {} : { idleTimeoutSeconds: options.idleTimeoutSeconds }),
      ...(options.collectAfterRequests === undefined ? {} : { collectAfterRequests: options.collectAfterRequests }),
      ...(options.mcp === undefined ? {} : { mcp: options.mcp }),
      ...(options.traceUrl === undefined ? {} : { traceUrl: options.traceUrl }),
      ...(options.traceSampleRatio === undefined ? {} : { traceSampleRatio: options.traceSampleRatio })
    })
  )
  const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  const url = `http://127.0.0.1:${address.port}`
  // Every response a test receives through the harness is checked against /openapi.json.
  const fetchPath = (path: string, init?: RequestInit) =>
    fetch(url + path, init).then((response) => checkResponse(url, init?.method ?? "GET", path, response))
  const admin = (path: string, init: RequestInit = {}) =>
    fetchPath(path, {
      ...init,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json", ...(init.headers ?? {}) }
    })
  let tenants = 0
  const createTenant = async (name = `tenant-${++tenants}-${randomBytes(4).toString("hex")}`) => {
    const response = await admin("/v1/admin/tenants", { method: "POST", body: JSON.stringify({ name }) })
    if (response.status !== 201) throw new Error(`creating a tenant answered ${response.status}: ${await response.text()}`)
    return (await response.json()) as { id: string; api_key: string; api_key_id: string }
  }
  const accessToken = async (apiKey: string) => {
    const response = await fetchPath("/v1/auth/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ api_key: apiKey })
    })
    if (response.status !== 200) throw new Error(`token exchange answered ${response.status}: ${await response.text()}`)
    return ((await response.json()) as { access_token: string }).access_token
  }
  return {
    url,
    adminToken,
    accessToken,
    jwtSecret,
    directory,
    databaseFile,
    databaseUrl: onPostgres ? databaseFile : `file:${databaseFile}`,
    fetch: fetchPath,
    admin,
    createTenant,
    close: async (closeOptions) => {
      await runtime.dispose()
      if (ownsFiles && closeOptions?.keepFiles !== true) rmSync(directory, { recursive: true, force: true })
      if (clone !== undefined && closeOptions?.keepFiles !== true) await clone.drop()
    }
  }
}

/** Calls with an API key and a JSON body. */
export const withKey = (key: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...(init.headers ?? {}) }
})

/** SPEC §2: a lowercase UUID v7 (time-ordered); Bulwark mints only v7. */
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly instance: string
  readonly code: string
  readonly error_id: string
  readonly retry_after_seconds?: number
  readonly errors?: ReadonlyArray<{ pointer: string; detail: string }>
}

/**
 * Reads a problem response and checks everything SPEC §2 promises of every one: status, code,
 * content type, error_id format, instance, type, request id, and that nothing server-side leaks.
 */
export const expectProblem = async (response: Response, status: number, code: string): Promise<Problem> => {
  const text = await response.text()
  const context = `${response.status} ${text}`
  if (response.status !== status) throw new Error(`expected ${status} ${code}, got ${context}`)
  if (response.headers.get("content-type") !== "application/problem+json") {
    throw new Error(`expected application/problem+json, got ${response.headers.get("content-type")}: ${context}`)
  }
  const body = JSON.parse(text) as Problem
  if (body.code !== code) throw new Error(`expected code ${code}: ${context}`)
  if (body.status !== status) throw new Error(`body status differs: ${context}`)
  if (!UUID_V7.test(body.error_id)) throw new Error(`error_id is not a lowercase uuid v7: ${context}`)
  if (body.instance !== `urn:uuid:${body.error_id}`) throw new Error(`instance does not name the error_id: ${context}`)
  if (body.type !== `/problems/${code.toLowerCase().replaceAll("_", "-")}`) throw new Error(`type does not match code: ${context}`)
  if (!response.headers.get("x-request-id")) throw new Error(`no X-Request-Id: ${context}`)
  for (const leak of [/\bat .*\(.*:\d+:\d+\)/, /\.ts\b/, /SELECT|INSERT|UPDATE|DELETE FROM/i, /SQLITE_|sqlite/i, /node_modules/, /\/var\/|\/tmp\//]) {
    if (leak.test(text)) throw new Error(`problem body leaks server detail (${leak}): ${text}`)
  }
  if ((status === 429 || status === 503) !== (body.retry_after_seconds !== undefined)) {
    throw new Error(`retry_after_seconds must be present exactly on 429/503: ${context}`)
  }
  if (body.retry_after_seconds !== undefined && response.headers.get("retry-after") !== String(body.retry_after_seconds)) {
    throw new Error(`Retry-After header must match retry_after_seconds: ${context}`)
  }
  if (status === 401 && !(response.headers.get("www-authenticate") ?? "").startsWith("Bearer")) {
    throw new Error(`401 without WWW-Authenticate: Bearer: ${context}`)
  }
  if (body.errors !== undefined && ![400, 413, 415].includes(status)) {
    throw new Error(`errors only belongs on validation failures: ${context}`)
  }
  return body
}

/** Polls until `probe` returns a value (the ledger writes off the request path), at most `millis`. */
export const eventually = async <A>(probe: () => Promise<A | undefined>, millis = 3000): Promise<A> => {
  const deadline = Date.now() + millis
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`condition not met within ${millis} ms`)
    await Bun.sleep(10)
  }
}

/** A ledger row as the admin API returns it. */
export type LedgerRecord = typeof ErrorRecord.Encoded

/** The ledger row of an error, once the background writer has stored it. */
export const ledgerRecord = (server: TestServer, errorId: string): Promise<LedgerRecord> =>
  eventually(async () => {
    const response = await server.admin(`/v1/admin/errors/${errorId}`)
    if (response.status === 404) {
      await response.body?.cancel()
      return undefined
    }
    if (response.status !== 200) throw new Error(`reading the ledger answered ${response.status}: ${await response.text()}`)
    return (await response.json()) as LedgerRecord
  })
