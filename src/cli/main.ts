/**
 * The admin CLI (`bun run cli -- <command>`). It works on the database directly, with the same
 * services and the same typed errors as the server; a failure prints one line and exits 1.
 */
import { Args, Command, Options, ValidationError } from "@effect/cli"
import { BunContext, BunRuntime } from "@effect/platform-bun"
import { Cause, Config, Console, Effect, Layer, Option, Redacted, Schema } from "effect"
import * as Database from "../../layers/database/Database.js"
import * as Migrations from "../../layers/database/Migrations.js"
import { ErrorRecords } from "../../services/ErrorLedger.js"
import { Tenants } from "../../services/Tenants.js"
import { storedSecret } from "../../layers/Secrets.js"
import { appConfig, dataDirectoryOf, describeStartupFailure } from "../Config.js"
import { ListErrorsParams } from "../domain/ErrorRecord.js"
import { Uuid } from "../domain/Ids.js"
import { AgentName, KeyId, TenantId } from "../domain/Tenant.js"
import { isAppError } from "../errors.js"
import { InfrastructureLive, SQLITE_BUSY_TIMEOUT_MILLIS } from "../Server.js"

const databaseOptions = Effect.map(appConfig, (config) => ({
  url: config.database,
  sqliteBusyTimeoutMillis: SQLITE_BUSY_TIMEOUT_MILLIS
}))

/**
 * The services a command needs, on the configured database with migrations applied, and the same
 * cache as the server (so a key revoked here is dropped from a shared cache too).
 */
const TenantsLive = Layer.unwrapEffect(
  Effect.map(appConfig, (config) => Tenants.Default.pipe(Layer.provide(InfrastructureLive({ config }))))
)

const ErrorRecordsLive = Layer.unwrapEffect(
  Effect.map(appConfig, (config) => ErrorRecords.Default.pipe(Layer.provide(InfrastructureLive({ config }))))
)

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

class UsageError extends Error {}

const decodeOrFail = <A, I>(schema: Schema.Schema<A, I>, what: string) => (input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError(() => new UsageError(`${what} is not valid: ${JSON.stringify(input)}`))
  )

const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const options = yield* databaseOptions
    const applied = yield* Migrations.run.pipe(Effect.provide(Database.clientLayer(options)))
    yield* printJson({ applied: applied.map(([id, name]) => `${id}_${name}`) })
  })).pipe(Command.withDescription("Apply pending database migrations."))

const tenantCreate = Command.make("create", { name: Args.text({ name: "name" }) }, ({ name }) =>
  Effect.gen(function*() {
    const tenants = yield* Tenants
    yield* printJson(yield* tenants.createTenant(name))
  }).pipe(Effect.provide(TenantsLive))).pipe(Command.withDescription("Create a tenant; prints its first API key once."))

const parseAgents = (raw: string) =>
  decodeOrFail(Schema.Array(AgentName), "--agents")(raw.split(",").map((agent) => agent.trim()).filter((agent) => agent !== ""))

const keyCreate = Command.make(
  "create",
  {
    tenant: Options.text("tenant").pipe(Options.withDescription("the tenant id")),
    agents: Options.text("agents").pipe(Options.optional, Options.withDescription("a,b,c or '*' (default '*')")),
    name: Options.text("name").pipe(Options.optional),
    admin: Options.boolean("admin").pipe(Options.withDescription("the key may also use /v1/admin routes"))
  },
  ({ admin, agents, name, tenant }) =>
    Effect.gen(function*() {
      const tenantId = yield* decodeOrFail(TenantId, "--tenant")(tenant)
      const allowedAgents = Option.isSome(agents) ? yield* parseAgents(agents.value) : undefined
      const tenants = yield* Tenants
      yield* printJson(
        yield* tenants.createKey(tenantId, { name: Option.getOrUndefined(name), allowedAgents, admin })
      )
    }).pipe(Effect.provide(TenantsLive))
).pipe(Command.withDescription("Create an API key for a tenant; prints it once."))

const keyRevoke = Command.make("revoke", { id: Args.text({ name: "id" }) }, ({ id }) =>
  Effect.gen(function*() {
    const keyId = yield* decodeOrFail(KeyId, "key id")(id)
    const tenants = yield* Tenants
    yield* tenants.revokeKey(keyId)
    yield* printJson({ revoked: keyId })
  }).pipe(Effect.provide(TenantsLive))).pipe(Command.withDescription("Revoke an API key and every token issued for it."))

const errorsList = Command.make(
  "list",
  {
    type: Options.text("type").pipe(Options.optional),
    code: Options.text("code").pipe(Options.optional),
    severity: Options.text("severity").pipe(Options.optional),
    session: Options.text("session").pipe(Options.optional),
    resolved: Options.text("resolved").pipe(Options.optional, Options.withDescription("true or false")),
    since: Options.text("since").pipe(Options.optional, Options.withDescription("RFC 3339 timestamp")),
    limit: Options.text("limit").pipe(Options.optional)
  },
  (options) =>
    Effect.gen(function*() {
      const given = Object.fromEntries(
        Object.entries({ ...options, session_id: options.session, session: Option.none() })
          .flatMap(([name, value]) => (Option.isSome(value) ? [[name, value.value]] : []))
      )
      const filter = yield* decodeOrFail(ListErrorsParams, "the filter")(given)
      const errors = yield* ErrorRecords
      yield* printJson({ data: yield* errors.list(filter) })
    }).pipe(Effect.provide(ErrorRecordsLive))
).pipe(Command.withDescription("List error records, newest first."))

const errorsShow = Command.make("show", { id: Args.text({ name: "error_id" }) }, ({ id }) =>
  Effect.gen(function*() {
    const errorId = yield* decodeOrFail(Uuid, "error_id")(id)
    const errors = yield* ErrorRecords
    yield* printJson(yield* errors.get(errorId))
  }).pipe(Effect.provide(ErrorRecordsLive))).pipe(Command.withDescription("Show one error record."))

const errorsResolve = Command.make(
  "resolve",
  { id: Args.text({ name: "error_id" }), notes: Options.text("notes").pipe(Options.optional) },
  ({ id, notes }) =>
    Effect.gen(function*() {
      const errorId = yield* decodeOrFail(Uuid, "error_id")(id)
      const errors = yield* ErrorRecords
      yield* printJson(yield* errors.resolve(errorId, Option.getOrUndefined(notes)))
    }).pipe(Effect.provide(ErrorRecordsLive))
).pipe(Command.withDescription("Mark an error record resolved, with optional notes."))

/**
 * Breakers live in the running server's memory, so this command asks the server (at `BULWARK_URL`,
 * default `http://HOST:PORT`) with the admin token (`BULWARK_ADMIN_TOKEN` or the stored one).
 */
const breaker = Command.make(
  "breaker",
  {
    dependency: Args.choice([["database", "database"], ["cache", "cache"]] as const, { name: "dependency" }),
    action: Args.choice([["open", "open"], ["close", "close"], ["disable", "disable"], ["status", "status"]] as const, { name: "action" })
  },
  ({ action, dependency }) =>
    Effect.gen(function*() {
      const config = yield* appConfig
      const baseUrl = yield* Config.string("BULWARK_URL").pipe(Config.withDefault(`http://${config.host}:${config.port}`))
      const token = Option.isSome(config.adminToken)
        ? config.adminToken.value
        : yield* storedSecret("BULWARK_ADMIN_TOKEN", dataDirectoryOf(config.database), "admin-token")
      const request = action === "status"
        ? fetch(`${baseUrl}/v1/admin/breakers`, { headers: { authorization: `Bearer ${Redacted.value(token)}` } })
        : fetch(`${baseUrl}/v1/admin/breakers/${dependency}`, {
          method: "POST",
          headers: { authorization: `Bearer ${Redacted.value(token)}`, "content-type": "application/json" },
          body: JSON.stringify({ action })
        })
      const response = yield* Effect.tryPromise({
        try: () => request,
        catch: (cause) => new UsageError(`cannot reach the server at ${baseUrl} (${cause instanceof Error ? cause.message : String(cause)})`)
      })
      const body = yield* Effect.promise(() => response.json() as Promise<{ data?: Array<{ dependency: string }>; code?: string; detail?: string }>)
      if (!response.ok) {
        return yield* Effect.fail(new UsageError(`the server answered ${response.status} ${body.code ?? ""}: ${body.detail ?? ""}`))
      }
      yield* printJson(action === "status" ? body.data?.find((entry) => entry.dependency === dependency) : body)
    })
).pipe(Command.withDescription("Read or set a circuit breaker of the running server."))

const cli = Command.make("bulwark").pipe(
  Command.withSubcommands([
    migrate,
    Command.make("tenant").pipe(Command.withSubcommands([tenantCreate])),
    Command.make("key").pipe(Command.withSubcommands([keyCreate, keyRevoke])),
    Command.make("errors").pipe(Command.withSubcommands([errorsList, errorsShow, errorsResolve])),
    breaker
  ])
)

const run = Command.run(cli, { name: "bulwark", version: "0.1.0" })

/** One line on stderr for any failure: the code and detail of a typed error, else the reason. */
const reportFailure = Effect.tapErrorCause((cause) =>
  Effect.sync(() => {
    const failure = Option.getOrUndefined(Cause.failureOption(cause))
    if (isAppError(failure)) {
      console.error(`error: ${failure.code}: ${"detail" in failure ? failure.detail : failure._tag}`)
    } else if (failure instanceof UsageError) {
      console.error(`error: ${failure.message}`)
    } else if (!ValidationError.isValidationError(failure)) {
      // @effect/cli has already printed its own usage message for a ValidationError.
      console.error(`error: ${describeStartupFailure(cause)}`)
    }
  })
)

run(process.argv).pipe(
  reportFailure,
  Effect.provide(BunContext.layer),
  (effect) => BunRuntime.runMain(effect, { disableErrorReporting: true, disablePrettyLogger: true })
)
