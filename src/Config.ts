/**
 * Configuration (SPEC §1), read once with Effect `Config` from the environment. A bad value stops
 * the process at start with one line naming the variable (see `describeConfigError`).
 */
import { Cause, Config, ConfigError, Context, Either, Layer, LogLevel, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"

export type DatabaseUrl =
  | { readonly _tag: "SqliteFile"; readonly filename: string }
  | { readonly _tag: "SqliteMemory" }
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string>; readonly poolSize: number }

export const DEFAULT_DB_POOL_SIZE = 10

export const parseDatabaseUrl = (raw: string, poolSize = DEFAULT_DB_POOL_SIZE): Either.Either<DatabaseUrl, string> => {
  if (raw === ":memory:") return Either.right({ _tag: "SqliteMemory" })
  if (raw.startsWith("file:")) {
    const filename = raw.slice("file:".length)
    return filename.length > 0
      ? Either.right({ _tag: "SqliteFile", filename })
      : Either.left("expected file:PATH with a non-empty path")
  }
  if (raw.startsWith("postgres://") || raw.startsWith("postgresql://")) {
    return Either.right({ _tag: "Postgres", url: Redacted.make(raw), poolSize })
  }
  return Either.left("expected file:PATH, :memory: or postgres://...")
}

/** Connections per instance (SPEC §1). */
const poolSize = Config.integer("BULWARK_DB_POOL_SIZE").pipe(
  Config.withDefault(DEFAULT_DB_POOL_SIZE),
  Config.mapOrFail((size) =>
    size >= 1 && size <= 1000
      ? Either.right(size)
      : Either.left(ConfigError.InvalidData(["BULWARK_DB_POOL_SIZE"], "expected a whole number of connections from 1 to 1000"))
  )
)

const databaseUrl = Config.all({ raw: Config.string("DATABASE_URL").pipe(Config.withDefault("file:./data/bulwark.db")), poolSize }).pipe(
  Config.mapOrFail(({ poolSize, raw }) =>
    Either.mapLeft(parseDatabaseUrl(raw, poolSize), (message) => ConfigError.InvalidData(["DATABASE_URL"], message))
  )
)

/**
 * A secret from its variable or from the file its `_FILE` variable names (the usual secret-mount
 * convention); at least 32 characters either way. `None` when neither is set.
 */
const secret = (variable: string) =>
  Config.all({
    value: Config.option(Config.redacted(variable)),
    file: Config.option(Config.nonEmptyString(`${variable}_FILE`))
  }).pipe(
    Config.mapOrFail(({ file, value }): Either.Either<Option.Option<Redacted.Redacted<string>>, ConfigError.ConfigError> => {
      if (Option.isSome(value) && Option.isSome(file)) {
        return Either.left(ConfigError.InvalidData([variable], `set either ${variable} or ${variable}_FILE, not both`))
      }
      if (Option.isSome(value)) {
        return Redacted.value(value.value).length >= 32
          ? Either.right(value)
          : Either.left(ConfigError.InvalidData([variable], "must be at least 32 characters"))
      }
      if (Option.isNone(file)) return Either.right(Option.none())
      const read = Either.try(() => readFileSync(file.value, "utf8").trim())
      if (Either.isLeft(read)) {
        const reason = read.left instanceof Error ? read.left.message : String(read.left)
        return Either.left(ConfigError.InvalidData([`${variable}_FILE`], `cannot read ${file.value} (${reason})`))
      }
      return read.right.length >= 32
        ? Either.right(Option.some(Redacted.make(read.right)))
        : Either.left(ConfigError.InvalidData([`${variable}_FILE`], `${file.value} must hold at least 32 characters`))
    })
  )

/** `Config.validate` reports an empty path; this keeps the variable's name in the error. */
const requiring = <A>(variable: string, message: string, valid: (value: A) => boolean) =>
  Config.mapOrFail((value: A) =>
    valid(value) ? Either.right(value) : Either.left(ConfigError.InvalidData([variable], message))
  )

const port = Config.integer("PORT").pipe(
  Config.withDefault(3000),
  requiring("PORT", "expected a port number from 0 to 65535", (n) => n >= 0 && n <= 65535)
)

const logFormat = Config.literal("json", "pretty")("LOG_FORMAT").pipe(Config.withDefault("json" as const))
const logLevel = Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

/** The log settings alone: the CLI sets up its logger before it reads (and may fail on) the rest. */
export const logSettings = Config.all({ format: logFormat, level: logLevel })

const positiveMillis = (variable: string, fallback: number) =>
  Config.integer(variable).pipe(
    Config.withDefault(fallback),
    requiring(variable, "expected a whole number of milliseconds, at least 1", (millis) => millis >= 1)
  )

const telemetry = Config.all({
  endpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(Config.map((url) => url.toString()))),
  protocol: Config.literal("http/json", "http/protobuf")("OTEL_EXPORTER_OTLP_PROTOCOL").pipe(Config.withDefault("http/json" as const)),
  serviceName: Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("bulwark")),
  traceExportIntervalMillis: positiveMillis("OTEL_BSP_SCHEDULE_DELAY", 5000),
  metricExportIntervalMillis: positiveMillis("OTEL_METRIC_EXPORT_INTERVAL", 60000)
})

export interface RateLimit {
  readonly limit: number
  readonly windowMillis: number
}

/** `600/60s`: requests per window; the window in s, m or h. */
export const parseRateLimit = (raw: string): Either.Either<RateLimit, string> => {
  const match = /^(\d+)\/(\d+)(s|m|h)$/.exec(raw.trim())
  if (match === null) return Either.left("expected N/<window> such as 600/60s, 100/1m or 5000/1h")
  const limit = Number(match[1])
  const windowMillis = Number(match[2]) * { s: 1000, m: 60_000, h: 3_600_000 }[match[3] as "s" | "m" | "h"]
  return limit >= 1 && windowMillis >= 1000 ? Either.right({ limit, windowMillis }) : Either.left("the limit must be at least 1 and the window at least 1s")
}

export const appConfig = Config.all({
  port,
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  database: databaseUrl,
  adminToken: secret("BULWARK_ADMIN_TOKEN"),
  redisUrl: Config.option(
    Config.string("REDIS_URL").pipe(
      Config.mapOrFail((url) =>
        /^rediss?:\/\/[^\s]+$/.test(url) ? Either.right(url) : Either.left(ConfigError.InvalidData(["REDIS_URL"], "expected redis://host:port"))
      )
    )
  ),
  cacheRequired: Config.boolean("BULWARK_CACHE_REQUIRED").pipe(Config.withDefault(false)),
  rateLimit: Config.string("BULWARK_RATE_LIMIT").pipe(
    Config.withDefault("600/60s"),
    Config.mapOrFail((raw) => Either.mapLeft(parseRateLimit(raw), (message) => ConfigError.InvalidData(["BULWARK_RATE_LIMIT"], message)))
  ),
  requestTimeoutMillis: positiveMillis("BULWARK_REQUEST_TIMEOUT_MS", 10_000),
  jwtSecret: secret("BULWARK_JWT_SECRET"),
  errorRetentionDays: Config.integer("BULWARK_ERROR_RETENTION_DAYS").pipe(
    Config.withDefault(30),
    requiring("BULWARK_ERROR_RETENTION_DAYS", "expected a whole number of days, at least 1", (days) => days >= 1)
  ),
  logLevel,
  logFormat,
  telemetry
})

export type AppConfigShape = Config.Config.Success<typeof appConfig>

/**
 * Read beside `appConfig` and passed to the server as options of their own, so that a configuration
 * built by hand (tests, the benchmark) need not name them.
 * - `BULWARK_TRACE_URL`: the console's link from an error to its trace, `{trace_id}` replaced;
 * - `OTEL_TRACES_SAMPLER_ARG`: the share of new traces recorded (parent-based ratio sampling; a
 *   request that brings a `traceparent` follows its caller's decision).
 */
export const consoleTracingConfig = Config.all({
  traceUrl: Config.option(
    Config.string("BULWARK_TRACE_URL").pipe(
      requiring("BULWARK_TRACE_URL", "expected an http(s) URL containing {trace_id}", (url) => /^https?:\/\/\S+$/.test(url) && url.includes("{trace_id}"))
    )
  ),
  traceSampleRatio: Config.number("OTEL_TRACES_SAMPLER_ARG").pipe(
    Config.withDefault(1),
    requiring("OTEL_TRACES_SAMPLER_ARG", "expected a ratio from 0 to 1", (ratio) => ratio >= 0 && ratio <= 1)
  )
})

/** Caps on open event streams (SPEC §1), read beside `appConfig` like `consoleTracingConfig`. */
export const streamCapsConfig = Config.all({
  perKey: Config.integer("BULWARK_MAX_STREAMS_PER_KEY").pipe(
    Config.withDefault(100),
    requiring("BULWARK_MAX_STREAMS_PER_KEY", "expected a whole number of streams, at least 1", (n) => n >= 1)
  ),
  total: Config.integer("BULWARK_MAX_STREAMS").pipe(
    Config.withDefault(10_000),
    requiring("BULWARK_MAX_STREAMS", "expected a whole number of streams, at least 1", (n) => n >= 1)
  )
})

export class AppConfig extends Context.Tag("bulwark/AppConfig")<AppConfig, AppConfigShape>() {
  static readonly layer = Layer.effect(AppConfig, appConfig)
}

/** The directory for the database file and the generated secrets. */
export const dataDirectoryOf = (database: DatabaseUrl): string => {
  if (database._tag !== "SqliteFile") return "./data"
  const slash = database.filename.lastIndexOf("/")
  return slash <= 0 ? (slash === 0 ? "/" : ".") : database.filename.slice(0, slash)
}

/** One line naming the variable: `PORT: expected an integer, got "abc"`. */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const lines = ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: Array<string>, right: Array<string>) => [...left, ...right],
    orCase: (_, left: Array<string>, right: Array<string>) => [...left, ...right],
    invalidDataCase: (_, path, message) => [`${path.join(".")}: ${message}`],
    missingDataCase: (_, path, message) => [`${path.join(".")}: ${message}`],
    sourceUnavailableCase: (_, path, message) => [`${path.join(".")}: ${message}`],
    unsupportedCase: (_, path, message) => [`${path.join(".")}: ${message}`]
  })
  return `invalid configuration: ${lines.join("; ")}`
}

/** A start-up failure that is not a parse error: the variable it concerns and what went wrong. */
export class StartupError extends Error {
  constructor(readonly variable: string, readonly reason: string) {
    super(`${variable}: ${reason}`)
    this.name = "StartupError"
  }
}

/** The one line a failed start prints, whatever failed. */
export const describeStartupFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ConfigError.isConfigError(error)) return describeConfigError(error)
    if (error instanceof StartupError) return `cannot start: ${error.message}`
  }
  const squashed = Cause.squash(cause)
  if (squashed instanceof StartupError) return `cannot start: ${squashed.message}`
  return `cannot start: ${squashed instanceof Error ? squashed.message : String(squashed)}`
}
