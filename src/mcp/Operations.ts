/**
 * What both eras of the protocol do the same way: call a tool, read the messages resource, watch a
 * session for new messages, under one error model and one kind of span and metric (SPEC §11). A
 * tool that fails answers `isError: true` with the REST problem object and one text line, and the
 * failure is ledgered with type `mcp` and route `mcp tools/call {tool}`.
 */
import { HttpApiError } from "@effect/platform"
import { Cause, Effect, Either, Metric, MetricBoundaries, Option, Schema, Stream, type Tracer } from "effect"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { Events, type StreamItem } from "../../services/Events.js"
import { Messages } from "../../services/Messages.js"
import type { Principal } from "../domain/Principal.js"
import { SessionId } from "../domain/Session.js"
import { type AppError, FieldIssue, ValidationFailed } from "../errors.js"
import { classify, fromDecodeError, problemBody, type ProblemJson } from "../http/Problem.js"
import { HTTP_DURATION_BUCKETS, labelled } from "../telemetry/Metrics.js"
import { sanitizePayload } from "../telemetry/Sanitize.js"
import type { McpServices } from "./Runner.js"
import { type Tool, toolsByName } from "./Tools.js"

/** Who asks, over which era and session: what a span and a ledger row say about an MCP request. */
export interface CallContext {
  readonly caller: Principal
  readonly protocolVersion: string
  /** The 2025-11-25 era's `Mcp-Session-Id`; none in the stateless era. */
  readonly mcpSessionId: string | undefined
  readonly jsonRpcId: string | number
  readonly httpRequestId: string | undefined
  readonly userAgent: string | undefined
  /** The request's server span, opened at the edge; the SDK's handlers run in fibers of their own. */
  readonly span: Tracer.Span | undefined
}

export interface CallToolResult {
  readonly [key: string]: unknown
  readonly content: ReadonlyArray<{ readonly type: "text"; readonly text: string }>
  readonly structuredContent: Record<string, unknown>
  readonly isError: boolean
}

/** OpenTelemetry's MCP server metric (seconds, the HTTP buckets). */
const operationDuration = Metric.histogram(
  "mcp.server.operation.duration",
  MetricBoundaries.fromIterable(HTTP_DURATION_BUCKETS),
  "Duration of MCP requests handled by the server, in seconds"
)
const operationDurationBy = labelled(operationDuration, ["mcp.method.name", "gen_ai.tool.name", "error.type", "mcp.protocol.version"])

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A resource failure carries its error; its tag is what the metric's `error.type` says. */
const tagOfFailure = (failure: unknown): string =>
  failure instanceof ResourceFailure ? failure.error._tag : "_OTHER"

/**
 * One MCP operation timed into `mcp.server.operation.duration`, with what it knows of its era and
 * session written on the request's server span (which the edge opened, named and parented);
 * `errorTypeOf` tells the metric which failure a result carries.
 */
export const observed = <A, E, R>(
  method: string,
  tool: string | undefined,
  context: Omit<CallContext, "caller"> & { readonly caller?: Principal | undefined },
  errorTypeOf: (result: A) => string | undefined,
  work: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.clockWith((clock) => {
    const started = clock.unsafeCurrentTimeMillis()
    const span = context.span
    if (span !== undefined) {
      span.attribute("mcp.protocol.version", context.protocolVersion)
      if (context.mcpSessionId !== undefined) span.attribute("mcp.session.id", context.mcpSessionId)
    }
    const record = (errorType: string | undefined) =>
      Effect.sync(() =>
        operationDurationBy(method, tool ?? "", errorType ?? "", context.protocolVersion)
          .unsafeUpdate((clock.unsafeCurrentTimeMillis() - started) / 1000, [])
      )
    return work.pipe(
      // The span's own `error.type` and `error.id` are set where the failure is ledgered.
      Effect.tap((result) => record(errorTypeOf(result))),
      Effect.tapErrorCause((cause) => record(Option.getOrElse(Option.map(Cause.failureOption(cause), tagOfFailure), () => "_OTHER")))
    )
  })

const MAX_LEDGERED_STRING = 1024

/** Long strings in the arguments are cut one by one, so what is kept is still JSON and fits the row. */
const shortened = (value: unknown, depth = 0): unknown => {
  if (typeof value === "string") return value.length > MAX_LEDGERED_STRING ? `${value.slice(0, MAX_LEDGERED_STRING)}…[truncated]` : value
  if (value === null || typeof value !== "object" || depth > 16) return value
  if (Array.isArray(value)) return value.slice(0, 64).map((item) => shortened(item, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, shortened(inner, depth + 1)]))
}

/** Ledgers an MCP failure (type `mcp`) and returns its problem object. */
export const recordFailure = (
  error: AppError,
  route: string,
  context: CallContext,
  details: { readonly sessionId?: string | undefined; readonly payload?: unknown }
): Effect.Effect<ProblemJson, never, ErrorLedger> =>
  Effect.gen(function*() {
    const ledger = yield* ErrorLedger
    const span = context.span
    const errorId = yield* ledger.record(error, {
      type: "mcp",
      route,
      method: "POST",
      requestId: context.httpRequestId,
      traceId: span?.traceId,
      userAgent: context.userAgent,
      tenantId: context.caller.tenantId,
      sessionId: details.sessionId,
      requestPayload: details.payload === undefined ? null : sanitizePayload(JSON.stringify(shortened(details.payload)))
    })
    span?.attribute("error.type", error._tag)
    span?.attribute("error.id", errorId)
    return problemBody(error, errorId)
  })

/** The line a model reads first: `CODE: detail (error_id ...)`. */
export const problemLine = (problem: ProblemJson): string => `${problem.code}: ${problem.detail} (error_id ${problem.error_id})`

/** Each tool's argument decoder, compiled once; synchronous, so a call only builds an effect to fail. */
const decoders = new Map([...toolsByName.values()].map((tool) => [tool.name, Schema.decodeUnknownEither(tool.input, { errors: "all" })]))

const decodeArguments = (tool: Tool, args: unknown): Effect.Effect<unknown, ValidationFailed> =>
  Either.match(decoders.get(tool.name)!(args ?? {}), {
    onLeft: (error) =>
      Effect.mapError(HttpApiError.HttpApiDecodeError.refailParseError(error), (decodeError) =>
        new ValidationFailed({ detail: "The arguments do not match the tool's input schema.", errors: fromDecodeError(decodeError).errors })),
    onRight: Effect.succeed
  })

const sessionOf = (args: unknown): string | undefined => {
  const id = typeof args === "object" && args !== null ? (args as { session_id?: unknown }).session_id : undefined
  return typeof id === "string" && UUID_SHAPE.test(id) ? id.toLowerCase() : undefined
}

/**
 * What a tool answered, with its `structuredContent` serialised once: a successful result's text is
 * that same JSON, so the wire form embeds it twice without serialising the value twice.
 */
export class ToolAnswer {
  constructor(
    readonly isError: boolean,
    readonly structured: object,
    readonly structuredJson: string,
    readonly text: string
  ) {}

  /** The protocol's `CallToolResult` as an object, for the SDK's handlers. */
  toResult(): CallToolResult {
    return {
      content: [{ type: "text", text: this.text }],
      // A plain object: the protocol's result schema wants a record, not a class instance.
      structuredContent: { ...this.structured } as Record<string, unknown>,
      isError: this.isError
    }
  }

  /** The `CallToolResult` as JSON; `extraFields` (`,"key":value...`) are added at its end. */
  toJson(extraFields = ""): string {
    return `{"content":[{"type":"text","text":${JSON.stringify(this.text)}}],"structuredContent":${this.structuredJson},"isError":${this.isError}${extraFields}}`
  }
}

/**
 * `tools/call` of a known tool. Every failure, bad arguments and defects included, is a result
 * with `isError: true`; nothing here fails.
 */
export const callTool = (tool: Tool, args: unknown, context: CallContext): Effect.Effect<ToolAnswer, never, McpServices> => {
  let failedWith: string | undefined
  return observed(
    "tools/call",
    tool.name,
    context,
    () => failedWith,
    decodeArguments(tool, args).pipe(
      Effect.flatMap((decoded) => tool.run(context.caller, decoded)),
      // The results are `Schema.Class`es without transformations: their encoded form is their fields
      // as they are (as the REST hot route sends a session), so they are sent without re-encoding.
      Effect.map((value) => {
        const json = JSON.stringify(value)
        return new ToolAnswer(false, value as object, json, json)
      }),
      Effect.catchAllCause((cause) => {
        const error = classify(cause)
        failedWith = error._tag
        return Effect.map(
          recordFailure(error, `mcp tools/call ${tool.name}`, context, { sessionId: sessionOf(args), payload: args }),
          (problem) => new ToolAnswer(true, problem, JSON.stringify(problem), problemLine(problem))
        )
      })
    )
  )
}

export const lookupTool = (name: unknown): Tool | undefined => (typeof name === "string" ? toolsByName.get(name) : undefined)

// Resources

export const MESSAGES_TEMPLATE = "bulwark://sessions/{session_id}/messages"
const MESSAGES_URI = /^bulwark:\/\/sessions\/([^/]+)\/messages$/
/** `resources/read` answers the session's newest messages, at most this many. */
export const LATEST_PAGE = 50

export const messagesUri = (sessionId: string) => `bulwark://sessions/${sessionId}/messages`

export const resourceTemplates = [{
  uriTemplate: MESSAGES_TEMPLATE,
  name: "session-messages",
  title: "Messages of a session",
  description: `The newest ${LATEST_PAGE} messages of a session, oldest first, as the list_messages body; subscribe to be told of each new one.`,
  mimeType: "application/json"
}]

/** A resource failure: a problem (already ledgered) the era renders as its own JSON-RPC error. */
export class ResourceFailure {
  readonly _tag = "ResourceFailure"
  constructor(readonly error: AppError, readonly problem: ProblemJson) {}
}

const decodeSessionId = Schema.decodeUnknownOption(SessionId)

/** The session a messages URI names, or `VALIDATION_FAILED` with `/uri`. */
const sessionOfUri = (uri: unknown): Effect.Effect<string, ValidationFailed> => {
  const match = typeof uri === "string" ? MESSAGES_URI.exec(uri) : null
  const id = match?.[1] === undefined ? Option.none() : decodeSessionId(match[1])
  return Option.match(id, {
    onNone: () =>
      Effect.fail(new ValidationFailed({
        detail: `No resource has this URI; the resources are ${MESSAGES_TEMPLATE}.`,
        errors: [new FieldIssue({ pointer: "/uri", detail: `must match ${MESSAGES_TEMPLATE} with a session UUID` })]
      })),
    onSome: Effect.succeed
  })
}

const failedResource = (route: string, uri: unknown, context: CallContext) => (cause: Cause.Cause<AppError>) => {
  const error = classify(cause)
  return Effect.flatMap(
    recordFailure(error, route, context, { sessionId: typeof uri === "string" ? sessionOf({ session_id: MESSAGES_URI.exec(uri)?.[1] }) : undefined, payload: { uri } }),
    (problem) => Effect.fail(new ResourceFailure(error, problem))
  )
}

/** `resources/read`: the session's newest page of messages, as JSON text. */
export const readMessages = (uri: unknown, context: CallContext) =>
  observed(
    "resources/read",
    undefined,
    context,
    () => undefined,
    Effect.gen(function*() {
      const sessionId = yield* sessionOfUri(uri)
      const events = yield* Events
      const messages = yield* Messages
      const newest = yield* events.newestSeq(context.caller.tenantId, sessionId)
      const page = yield* messages.list(context.caller.tenantId, sessionId, { after: Math.max(0, newest - LATEST_PAGE), limit: LATEST_PAGE })
      return { contents: [{ uri: uri as string, mimeType: "application/json", text: JSON.stringify(page) }] }
    }).pipe(Effect.catchAllCause(failedResource("mcp resources/read", uri, context)))
  )

/**
 * A subscription to a messages URI: checks the session now (a missing one fails at once), then
 * emits once per new message, posted through any door and any instance (the event bus and the
 * database's catch-up behind `Events.stream`). It ends when the session is deleted or its stream fails.
 */
export const watchMessages = (uri: unknown, context: CallContext) =>
  Effect.gen(function*() {
    const sessionId = yield* sessionOfUri(uri)
    const events = yield* Events
    const newest = yield* events.newestSeq(context.caller.tenantId, sessionId)
    const updates: Stream.Stream<StreamItem> = events.stream(context.caller.tenantId, sessionId, newest, {
      requestId: context.httpRequestId,
      userAgent: context.userAgent
    })
    return updates.pipe(
      Stream.takeWhile((item) => item._tag !== "Failed"),
      Stream.filter((item) => item._tag === "Message"),
      Stream.as(uri as string)
    )
  }).pipe(Effect.catchAllCause(failedResource("mcp resources/subscribe", uri, context)))
