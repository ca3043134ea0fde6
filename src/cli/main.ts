/**
 * The admin CLI (`bun run cli -- <command>`). It works on the database directly, with the same
 * services and the same typed errors as the server but wiring of its own (`Wiring.ts`); stdout
 * carries only the result, logs go to stderr, and a failure prints one line there and exits 1.
 */
import { Args, Command, Options, ValidationError } from "@effect/cli"
import * as BunFileSystem from "@effect/platform-bun/BunFileSystem"
import * as BunPath from "@effect/platform-bun/BunPath"
import * as BunRuntime from "@effect/platform-bun/BunRuntime"
import * as BunTerminal from "@effect/platform-bun/BunTerminal"
import { Cause, Config, Console, Effect, Layer, Option, Redacted, Schema } from "effect"
import { appConfig, dataDirectoryOf, describeStartupFailure, logSettings } from "../Config.js"
import { ListErrorsParams } from "../domain/ErrorRecord.js"
import { Uuid } from "../domain/Ids.js"
import { AgentName, KeyId, TenantId } from "../domain/Tenant.js"
import { isAppError } from "../errors.js"
import { storedSecret } from "../../layers/Secrets.js"
import * as Logging from "../telemetry/Logging.js"
import type { CliServices } from "./Wiring.js"

/**
 * Runs a data command on the CLI's own wiring (`Wiring.ts`), imported only here: `--help`, a usage
 * error and `breaker` never load the database and the services.
 */
const withServices = <A, E>(
  use: (wiring: typeof import("./Wiring.js")) => Effect.Effect<A, E, CliServices>
) =>
  Effect.flatMap(Effect.promise(() => import("./Wiring.js")), (wiring) => Effect.provide(use(wiring), wiring.ServicesLive))

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

class UsageError extends Error {}

const decodeOrFail = <A, I>(schema: Schema.Schema<A, I>, what: string) => (input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError(() => new UsageError(`${what} is not valid: ${JSON.stringify(input)}`))
  )

const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const config = yield* appConfig
    const [Database, Migrations] = yield* Effect.promise(() =>
      Promise.all([import("../../layers/database/Database.js"), import("../../layers/database/Migrations.js")])
    )
    const options = { url: config.database, sqliteBusyTimeoutMillis: Database.SQLITE_BUSY_TIMEOUT_MILLIS }
    const applied = yield* Migrations.run.pipe(Effect.provide(Database.clientLayer(options)))
    yield* printJson({ applied: applied.map(([id, name]) => `${id}_${name}`) })
  })).pipe(Command.withDescription("Apply pending database migrations."))

const tenantCreate = Command.make(
  "create",
  { name: Args.text({ name: "name" }).pipe(Args.withDescription("the tenant's name, unique")) },
  ({ name }) =>
    withServices(({ Tenants }) =>
      Effect.gen(function*() {
        const tenants = yield* Tenants
        yield* printJson(yield* tenants.createTenant(name))
      })
    )
).pipe(Command.withDescription("Create a tenant; prints it as JSON with its first API key (shown once)."))

const parseAgents = (raw: string) =>
  decodeOrFail(Schema.Array(AgentName), "--agents")(raw.split(",").map((agent) => agent.trim()).filter((agent) => agent !== ""))

const keyCreate = Command.make(
  "create",
  {
    tenant: Options.text("tenant").pipe(Options.withDescription("the tenant id")),
    agents: Options.text("agents").pipe(
      Options.withDescription("the agents the key may post as: a,b,c or '*' for any (default '*')"),
      Options.optional
    ),
    name: Options.text("name").pipe(Options.withDescription("a label for the key"), Options.optional),
    admin: Options.boolean("admin").pipe(Options.withDescription("the key may also use /v1/admin routes"))
  },
  ({ admin, agents, name, tenant }) =>
    Effect.gen(function*() {
      const tenantId = yield* decodeOrFail(TenantId, "--tenant")(tenant)
      const allowedAgents = Option.isSome(agents) ? yield* parseAgents(agents.value) : undefined
      yield* withServices(({ Tenants }) =>
        Effect.gen(function*() {
          const tenants = yield* Tenants
          yield* printJson(yield* tenants.createKey(tenantId, { name: Option.getOrUndefined(name), allowedAgents, admin }))
        })
      )
    })
).pipe(Command.withDescription("Create an API key for a tenant; prints it as JSON (the key is shown once)."))

const keyRevoke = Command.make("revoke", { id: Args.text({ name: "id" }).pipe(Args.withDescription("the API key's id")) }, ({ id }) =>
  Effect.gen(function*() {
    const keyId = yield* decodeOrFail(KeyId, "key id")(id)
    // The revoking transaction moves the change signal, so running servers refuse the key within 1 s.
    yield* withServices(({ Tenants }) => Effect.flatMap(Tenants, (tenants) => tenants.revokeKey(keyId)))
    yield* printJson({ revoked: keyId })
  })).pipe(Command.withDescription("Revoke an API key and every token issued for it; running servers refuse it within 1 s."))

const errorsList = Command.make(
  "list",
  {
    type: Options.text("type").pipe(Options.withDescription("only records of this type (validation, auth, database, ...)"), Options.optional),
    code: Options.text("code").pipe(Options.withDescription("only records with this error code, e.g. SESSION_NOT_FOUND"), Options.optional),
    severity: Options.text("severity").pipe(Options.withDescription("only this severity: warning, error or critical"), Options.optional),
    session: Options.text("session").pipe(Options.withDescription("only records of this session id"), Options.optional),
    resolved: Options.text("resolved").pipe(Options.withDescription("true or false"), Options.optional),
    since: Options.text("since").pipe(Options.withDescription("only records at or after this RFC 3339 timestamp"), Options.optional),
    limit: Options.text("limit").pipe(Options.withDescription("at most this many records"), Options.optional)
  },
  (options) =>
    Effect.gen(function*() {
      const given = Object.fromEntries(
        Object.entries({ ...options, session_id: options.session, session: Option.none() })
          .flatMap(([name, value]) => (Option.isSome(value) ? [[name, value.value]] : []))
      )
      const filter = yield* decodeOrFail(ListErrorsParams, "the filter")(given)
      yield* withServices(({ ErrorRecords }) =>
        Effect.gen(function*() {
          const errors = yield* ErrorRecords
          yield* printJson({ data: yield* errors.list(filter) })
        })
      )
    })
).pipe(Command.withDescription("List error records, newest first, as JSON { data: [...] }."))

const errorIdArg = Args.text({ name: "error_id" }).pipe(Args.withDescription("the error_id of a record (a UUID)"))

const errorsShow = Command.make("show", { id: errorIdArg }, ({ id }) =>
  Effect.gen(function*() {
    const errorId = yield* decodeOrFail(Uuid, "error_id")(id)
    yield* withServices(({ ErrorRecords }) => Effect.flatMap(Effect.flatMap(ErrorRecords, (errors) => errors.get(errorId)), printJson))
  })).pipe(Command.withDescription("Show one error record as JSON."))

const errorsResolve = Command.make(
  "resolve",
  { id: errorIdArg, notes: Options.text("notes").pipe(Options.withDescription("why it is resolved"), Options.optional) },
  ({ id, notes }) =>
    Effect.gen(function*() {
      const errorId = yield* decodeOrFail(Uuid, "error_id")(id)
      yield* withServices(({ ErrorRecords }) =>
        Effect.flatMap(Effect.flatMap(ErrorRecords, (errors) => errors.resolve(errorId, Option.getOrUndefined(notes))), printJson)
      )
    })
).pipe(Command.withDescription("Mark an error record resolved, with optional notes; prints the record as JSON."))

interface ServerReply {
  readonly data?: Array<{ readonly dependency: string }>
  readonly code?: string
  readonly detail?: string
}

/** The server's JSON reply; anything else (a proxy's HTML page, a cut body) is reported as what it is. */
const jsonReplyOf = (response: Response, baseUrl: string) =>
  Effect.gen(function*() {
    const contentType = response.headers.get("content-type") ?? "no content type"
    const notJson = (why: string) =>
      new UsageError(`the server at ${baseUrl} answered ${response.status} with ${contentType}, ${why}; is BULWARK_URL a Bulwark server?`)
    const text = yield* Effect.tryPromise({ try: () => response.text(), catch: () => notJson("and its body could not be read") })
    if (!/^application\/(problem\+)?json\b/i.test(contentType)) return yield* Effect.fail(notJson("not JSON"))
    return yield* Effect.try({ try: () => JSON.parse(text) as ServerReply, catch: () => notJson("but the body is not valid JSON") })
  })

/**
 * Breakers live in the running server's memory, so this command asks the server (at `BULWARK_URL`,
 * default `http://HOST:PORT`) with the admin token (`BULWARK_ADMIN_TOKEN` or the stored one).
 */
const breaker = Command.make(
  "breaker",
  {
    dependency: Args.choice([["database", "database"], ["cache", "cache"], ["memory", "memory"]] as const, { name: "dependency" }).pipe(
      Args.withDescription("whose breaker: database, cache or memory")
    ),
    action: Args.choice([["open", "open"], ["close", "close"], ["disable", "disable"], ["status", "status"]] as const, { name: "action" }).pipe(
      Args.withDescription("open (refuse calls), close (allow calls), disable (never trip) or status (print its state)")
    )
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
      const body = yield* jsonReplyOf(response, baseUrl)
      if (!response.ok) {
        return yield* Effect.fail(new UsageError(`the server answered ${response.status} ${body.code ?? ""}: ${body.detail ?? ""}`))
      }
      yield* printJson(action === "status" ? body.data?.find((entry) => entry.dependency === dependency) : body)
    })
).pipe(Command.withDescription("Read or set a circuit breaker of the running server."))

const cli = Command.make("bulwark").pipe(
  Command.withDescription(
    "Bulwark's admin CLI. Works on the database of DATABASE_URL (SQLite file or postgres://...) with the secrets of the environment; " +
      "prints its result on stdout (JSON) and logs on stderr; a failure prints one line on stderr and exits 1."
  ),
  Command.withSubcommands([
    migrate,
    Command.make("tenant").pipe(Command.withDescription("Tenants."), Command.withSubcommands([tenantCreate])),
    Command.make("key").pipe(Command.withDescription("API keys."), Command.withSubcommands([keyCreate, keyRevoke])),
    Command.make("errors").pipe(Command.withDescription("The error ledger."), Command.withSubcommands([errorsList, errorsShow, errorsResolve])),
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

/** What @effect/cli needs, without the command executor and workers that `BunContext` would load. */
const cliContext = Layer.mergeAll(BunFileSystem.layer, BunPath.layer, BunTerminal.layer)

/** Logs on stderr, so that stdout carries only the result (`| jq` works). */
const stderrLogging = Layer.unwrapEffect(Effect.map(logSettings, (settings) => Logging.layer({ ...settings, stream: "stderr" })))

run(process.argv).pipe(
  reportFailure,
  Effect.provide(cliContext),
  Effect.provide(stderrLogging),
  (effect) => BunRuntime.runMain(effect, { disableErrorReporting: true, disablePrettyLogger: true })
)
