/**
 * `MainLive`: the whole server as one layer, built from the configuration. Tests build the same
 * layer with a temporary database file and port 0.
 */
import { HttpServer } from "@effect/platform"
import { Cause, type Duration, Effect, FiberRef, Layer, Option, Record } from "effect"
import * as Database from "../layers/database/Database.js"
import { adminTokenLayer, jwtSecretLayer } from "../layers/Secrets.js"
import * as Cache from "../layers/cache/Cache.js"
import { defaultBusHealth, EventBus } from "../layers/events/EventBus.js"
import { MemoryStore } from "../layers/memory/MemoryStore.js"
import * as LoopDelay from "../layers/resilience/LoopDelay.js"
import { Auth } from "../services/Auth.js"
import { ConsoleSessions } from "../services/ConsoleSessions.js"
import { Health } from "../services/Health.js"
import { Idempotency } from "../services/Idempotency.js"
import { RateLimitConfig, RateLimiter, RateLimitStore } from "../services/RateLimiter.js"
import { CachedReads, CachePolicy } from "../services/CachedReads.js"
import { ErrorLedger, ErrorRecords } from "../services/ErrorLedger.js"
import { ErrorsRepo } from "../services/ErrorsRepo.js"
import { Events, type StreamCaps } from "../services/Events.js"
import { Memory } from "../services/Memory.js"
import { Messages } from "../services/Messages.js"
import { MessagesRepo } from "../services/MessagesRepo.js"
import { Sessions } from "../services/Sessions.js"
import { Tenants } from "../services/Tenants.js"
import { Api } from "./Api.js"
import { ConsoleSettings } from "./domain/Console.js"
import { type AppConfigShape, StartupError } from "./Config.js"
import { AdminAuthenticationLive, AuthenticationLive, OptionalOperatorLive } from "./http/Auth.js"
import * as ConsoleRoutes from "./console/Routes.js"
import * as Executor from "./http/Executor.js"
import * as McpEndpoint from "./mcp/Endpoint.js"
import { HandlersLive } from "./http/Handlers.js"
import * as Logging from "./telemetry/Logging.js"
import { serverScheduler } from "./Scheduler.js"
import * as Otlp from "./telemetry/Otlp.js"
import { RequestRates } from "./telemetry/Rates.js"

import { SQLITE_BUSY_TIMEOUT_MILLIS } from "../layers/database/Database.js"
import * as Supervised from "../layers/resilience/Supervised.js"
import * as AfterBurst from "../layers/resilience/AfterBurst.js"
export { SQLITE_BUSY_TIMEOUT_MILLIS }

/**
 * Requests in a burst after which, once they stop for `REQUESTS_QUIET`, the heap is collected in
 * full. Measured: after 5 s of load (15,000-70,000 requests) RSS stood at 150-200 MB against about
 * 100 MB idle, nearly all of it garbage the engine had not yet collected.
 */
const REQUEST_BURST = 10_000
const REQUESTS_QUIET = "2 seconds"

export interface ServerOptions {
  readonly config: AppConfigShape
  readonly sqliteBusyTimeoutMillis?: number
  /** Routes added beside the API (tests use this for a route that dies). */
  readonly extraRoutes?: ReadonlyArray<Executor.ExtraRoute>
  readonly telemetryShutdownTimeout?: Duration.DurationInput
  /** Breaker, retry and bulkhead settings of the database (tests shorten the open duration). */
  readonly databaseResilience?: Database.DatabaseResilience
  readonly cacheResilience?: Cache.CacheBreakerOptions
  /** Breaker, retry and bulkhead settings of the memory store. */
  readonly memoryResilience?: Database.DatabaseResilience
  /** How often an event stream pings and checks its session (SPEC: 15 s; tests shorten it). */
  readonly eventHeartbeat?: Duration.DurationInput
  /** Where rate limits are counted, when not as the configuration implies (tests of the database store on SQLite). */
  readonly rateLimitStore?: "cache" | "database"
  /** Seconds a connection may send nothing before Bun closes it (Bun's default, 10; tests shorten it). */
  readonly idleTimeoutSeconds?: number
  /** MCP session bounds and allowed origins (tests shorten the idle expiry). */
  readonly mcp?: McpEndpoint.McpOptions
  /** BULWARK_TRACE_URL (see `consoleTracingConfig`). */
  readonly traceUrl?: string | null
  /** OTEL_TRACES_SAMPLER_ARG, 1 when not given. */
  readonly traceSampleRatio?: number
  /** BULWARK_MAX_STREAMS_PER_KEY / BULWARK_MAX_STREAMS (see `streamCapsConfig`); 100 / 10000 when not given. */
  readonly streamCaps?: StreamCaps
  /** When the heap is collected in full after a burst of requests (tests make the burst small). */
  readonly collectAfterRequests?: { readonly threshold: number; readonly quiet: Duration.DurationInput }
}

/**
 * Rate limits are counted where every instance sees them: Redis when set; else the database when it
 * is a server several instances share (PostgreSQL); else in process (SQLite serves one process).
 */
const rateLimitStoreOf = (options: ServerOptions): "cache" | "database" =>
  options.rateLimitStore ??
    (Option.isNone(options.config.redisUrl) && options.config.database._tag === "Postgres" ? "database" : "cache")

/** OTLP export when an endpoint is configured; without one nothing is exported. */
const TelemetryLive = (options: ServerOptions) =>
  Option.match(options.config.telemetry.endpoint, {
    onNone: () => Layer.empty,
    onSome: (endpoint) =>
      Otlp.layer({
        ...options.config.telemetry,
        endpoint,
        ...(options.telemetryShutdownTimeout === undefined ? {} : { shutdownTimeout: options.telemetryShutdownTimeout }),
        ...(options.traceSampleRatio === undefined ? {} : { sampleRatio: options.traceSampleRatio })
      })
  })

/** What the server and the CLI share: the database, the ledger, the cache and its policy. */
export const InfrastructureLive = (options: Omit<ServerOptions, "extraRoutes">) =>
  Layer.mergeAll(CachedReads.Default, ErrorRecords.Default).pipe(
    Layer.provideMerge(ErrorLedger.Default({ retentionDays: options.config.errorRetentionDays })),
    Layer.provideMerge(ErrorsRepo.Default),
    Layer.provideMerge(
      Option.match(options.config.redisUrl, { onNone: () => Cache.inProcess(), onSome: (url) => Cache.redis(url, options.cacheResilience) })
    ),
    Layer.provideMerge(Layer.succeed(CachePolicy, { required: options.config.cacheRequired })),
    Layer.provideMerge(
      Database.layer({
        url: options.config.database,
        sqliteBusyTimeoutMillis: options.sqliteBusyTimeoutMillis ?? SQLITE_BUSY_TIMEOUT_MILLIS,
        ...(options.databaseResilience === undefined ? {} : { resilience: options.databaseResilience })
      })
    ),
    // Every dependency's breaker reads it, so that a busy process is not taken for a slow dependency.
    Layer.provideMerge(LoopDelay.layer()),
    // Below everything, so that every background loop's failure reaches the ledger once it is up.
    Layer.provideMerge(Supervised.layer)
  )

/** Messages, memory and their live events: what agents use Bulwark for. */
const SharedContextLive = (options: ServerOptions) =>
  Layer.mergeAll(Sessions.Default, Messages.Default, Memory.Default).pipe(
    Layer.provideMerge(Events.layer({
      ...(options.eventHeartbeat === undefined ? {} : { heartbeat: options.eventHeartbeat }),
      ...(options.streamCaps === undefined ? {} : { caps: options.streamCaps })
    })),
    Layer.provideMerge(Layer.merge(
      EventBus.layerWith({ ...defaultBusHealth, sharedDatabase: options.config.database._tag !== "SqliteMemory" }),
      MessagesRepo.Default
    )),
    Layer.provideMerge(Idempotency.Default),
    Layer.provideMerge(
      MemoryStore.layer(Database.sizedToPool(options.memoryResilience ?? Database.defaultResilience, options.config.database, "memory"))
    )
  )

export const ServicesLive = (options: ServerOptions) =>
  Layer.mergeAll(Tenants.Default, Auth.Default, Health.Default, RateLimiter.Default, ConsoleSessions.Default, RequestRates.layer).pipe(
    Layer.provideMerge(Layer.succeed(ConsoleSettings, { traceUrl: options.traceUrl ?? null })),
    Layer.provideMerge(SharedContextLive(options)),
    Layer.provideMerge(Layer.succeed(RateLimitConfig, options.config.rateLimit)),
    Layer.provideMerge(Layer.succeed(RateLimitStore, rateLimitStoreOf(options))),
    Layer.provideMerge(adminTokenLayer(options.config.adminToken, options.config.database)),
    Layer.provideMerge(jwtSecretLayer(options.config.jwtSecret, options.config.database)),
    Layer.provideMerge(InfrastructureLive(options))
  )

/** The handlers of every group of the API, with the authentication they declare. */
export const HandlersAndAuthLive = HandlersLive.pipe(
  Layer.provide([AuthenticationLive, AdminAuthenticationLive, OptionalOperatorLive])
)

/**
 * Bun serves `/mcp` and the console from its own router; every other request goes to the
 * executor, which serves every route of the API (and the document and its page).
 */
const listen = (options: ServerOptions) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      const config = options.config
      const consoleRoutes = yield* ConsoleRoutes.make
      const executor = yield* Executor.make(Api, { requestTimeoutMillis: config.requestTimeoutMillis, extraRoutes: options.extraRoutes })
      const mcpRoutes = yield* McpEndpoint.make({ requestTimeoutMillis: config.requestTimeoutMillis, ...options.mcp })
      const afterLoad = yield* AfterBurst.make({
        threshold: options.collectAfterRequests?.threshold ?? REQUEST_BURST,
        quiet: options.collectAfterRequests?.quiet ?? REQUESTS_QUIET,
        run: AfterBurst.fullCollection("after a burst of requests")
      })
      // API and MCP requests make the burst (the console's few do not matter).
      const counted = <Args extends ReadonlyArray<unknown>, A>(handle: (...args: Args) => A) => (...args: Args): A => {
        afterLoad.record()
        return handle(...args)
      }
      const server = yield* Effect.try({ try: () =>
        Bun.serve({
          port: config.port,
          hostname: config.host,
          // Above our own 1 MiB rule, so that the boundary (not Bun) answers oversized bodies.
          maxRequestBodySize: 16 * 1024 * 1024,
          idleTimeout: options.idleTimeoutSeconds ?? 10,
          routes: { ...Record.map(mcpRoutes, counted), ...consoleRoutes },
          fetch: counted(executor.fetch)
        }),
        catch: (cause) => cause
      })
      // Stops accepting; requests in flight are finished.
      yield* Effect.addFinalizer(() => Effect.sync(() => server.stop()))
      return HttpServer.make({
        address: { _tag: "TcpAddress", port: server.port!, hostname: server.hostname! },
        serve: () => Effect.dieMessage("Bulwark's server serves its own executor, not an HttpApp")
      })
    })
  ).pipe(
    Layer.catchAllCause((cause) => {
      // A setting of the routes (the MCP endpoint's origins) names itself; anything else is the listen.
      const named = Cause.failureOption(cause).pipe(Option.filter((failure) => failure instanceof StartupError))
      return Layer.fail(Option.getOrElse(named, () => new StartupError("PORT", `cannot listen on ${options.config.host}:${options.config.port} (${Cause.squash(cause)})`)))
    })
  )

export const MainLive = (options: ServerOptions) =>
  listen(options).pipe(
    HttpServer.withLogAddress,
    Layer.provide(HandlersAndAuthLive),
    Layer.provide(ServicesLive(options)),
    Layer.provide(Logging.layer({ format: options.config.logFormat, level: options.config.logLevel })),
    Layer.provide(TelemetryLive(options)),
    // Every fiber the server starts (requests, background jobs) inherits it from the build.
    Layer.locally(FiberRef.currentScheduler, serverScheduler)
  )
