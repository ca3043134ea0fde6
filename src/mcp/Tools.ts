/**
 * The ten tools of SPEC §11: one table that both eras of the protocol serve. Each tool's arguments
 * mirror the REST body and parameters of its route and are decoded by the same Effect Schemas; its
 * result is the REST body. The JSON Schemas the protocol advertises are derived from those Schemas
 * (`JSONSchema.make`), so there is one schema per shape and nothing to keep equal by hand.
 */
import { Effect, JSONSchema, Schema } from "effect"
import { Memory } from "../../services/Memory.js"
import { Messages } from "../../services/Messages.js"
import { Sessions } from "../../services/Sessions.js"
import { MemoryEntry, MemoryKey, MemoryList, PutMemory } from "../domain/Memory.js"
import { Message, MessagePage, PostMessage } from "../domain/Message.js"
import type { Principal } from "../domain/Principal.js"
import { ProblemBody } from "../domain/Problem.js"
import { CreateSession, Session, SessionId, SessionPage } from "../domain/Session.js"
import type { AppError } from "../errors.js"

const IdempotencyKey = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255)).annotations({
  description: "Repeats with the same key and arguments within 24 h return the first result and write nothing."
})

const PageLimit = Schema.Int.pipe(Schema.between(1, 200)).annotations({ description: "Page size (default 50)." })

const SessionArgs = Schema.Struct({ session_id: SessionId })
const MemoryKeyArgs = Schema.Struct({ session_id: SessionId, key: MemoryKey })

/** What a delete answers: REST's 204 has no body, and a tool result needs one. */
export class Deleted extends Schema.Class<Deleted>("Deleted")({ deleted: Schema.Literal(true) }) {}

type ToolServices = Sessions | Messages | Memory

export interface Tool<A = any, I = any, O = any, OI = any> {
  readonly name: string
  readonly title: string
  readonly description: string
  readonly input: Schema.Schema<A, I>
  readonly output: Schema.Schema<O, OI>
  /** The tool's work; its session (when it names one) is ledgered with a failure. */
  readonly run: (caller: Principal, args: A) => Effect.Effect<O, AppError, ToolServices>
  readonly readOnly: boolean
  readonly destructive: boolean
  readonly idempotent: boolean
}

const tool = <A, I, O, OI>(definition: Tool<A, I, O, OI>): Tool<A, I, O, OI> => definition

export const tools: ReadonlyArray<Tool> = [
  tool({
    name: "create_session",
    title: "Create a session",
    description: "Creates a shared-context session (optionally with your own id, a title and metadata). An existing id is SESSION_ALREADY_EXISTS.",
    input: Schema.Struct({ ...CreateSession.fields, idempotency_key: Schema.optional(IdempotencyKey) }),
    output: Session,
    run: (caller, { idempotency_key, ...input }) =>
      Effect.flatMap(Sessions, (sessions) => sessions.createOnce(caller.tenantId, input, idempotency_key)),
    readOnly: false,
    destructive: false,
    idempotent: false
  }),
  tool({
    name: "get_session",
    title: "Read a session",
    description: "Reads one session of your tenant.",
    input: SessionArgs,
    output: Session,
    run: (caller, { session_id }) => Effect.flatMap(Sessions, (sessions) => sessions.get(caller.tenantId, session_id)),
    readOnly: true,
    destructive: false,
    idempotent: true
  }),
  tool({
    name: "list_sessions",
    title: "List sessions",
    description: "Lists your tenant's sessions, newest first; pass next_cursor as cursor for the next page.",
    input: Schema.Struct({ limit: Schema.optional(PageLimit), cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(512))) }),
    output: SessionPage,
    run: (caller, args) => Effect.flatMap(Sessions, (sessions) => sessions.list(caller.tenantId, args)),
    readOnly: true,
    destructive: false,
    idempotent: true
  }),
  tool({
    name: "delete_session",
    title: "Delete a session",
    description: "Deletes a session with its messages and memory.",
    input: SessionArgs,
    output: Deleted,
    run: (caller, { session_id }) =>
      Effect.flatMap(Sessions, (sessions) => Effect.as(sessions.remove(caller.tenantId, session_id), new Deleted({ deleted: true }))),
    readOnly: false,
    destructive: true,
    idempotent: false
  }),
  tool({
    name: "post_message",
    title: "Post a message",
    description: "Posts a message to a session as one of the agents your key allows; it gets the next seq. Subscribers of the session's messages resource are told.",
    input: Schema.Struct({ session_id: SessionId, ...PostMessage.fields, idempotency_key: Schema.optional(IdempotencyKey) }),
    output: Message,
    run: (caller, { idempotency_key, session_id, ...input }) =>
      Effect.flatMap(Messages, (messages) => messages.postOnce(caller, session_id, input, idempotency_key)),
    readOnly: false,
    destructive: false,
    idempotent: false
  }),
  tool({
    name: "list_messages",
    title: "List messages",
    description: "Lists a session's messages in seq order after `after` (default 0); pass next_after as after for the next page.",
    input: Schema.Struct({
      session_id: SessionId,
      after: Schema.optional(Schema.Int.pipe(Schema.nonNegative()).annotations({ description: "Only messages with a greater seq." })),
      limit: Schema.optional(PageLimit)
    }),
    output: MessagePage,
    run: (caller, { session_id, ...page }) => Effect.flatMap(Messages, (messages) => messages.list(caller.tenantId, session_id, page)),
    readOnly: true,
    destructive: false,
    idempotent: true
  }),
  tool({
    name: "get_memory",
    title: "Read a memory key",
    description: "Reads one key of a session's memory. An expired key is MEMORY_KEY_NOT_FOUND.",
    input: MemoryKeyArgs,
    output: MemoryEntry,
    run: (caller, { key, session_id }) => Effect.flatMap(Memory, (memory) => memory.get(caller.tenantId, session_id, key)),
    readOnly: true,
    destructive: false,
    idempotent: true
  }),
  tool({
    name: "set_memory",
    title: "Write a memory key",
    description: "Sets a key of a session's memory to any JSON value (at most 64 KiB), optionally expiring after ttl_seconds.",
    input: Schema.Struct({ session_id: SessionId, key: MemoryKey, ...PutMemory.fields }),
    output: MemoryEntry,
    run: (caller, { key, session_id, ...input }) => Effect.flatMap(Memory, (memory) => memory.put(caller.tenantId, session_id, key, input)),
    readOnly: false,
    destructive: false,
    idempotent: true
  }),
  tool({
    name: "delete_memory",
    title: "Delete a memory key",
    description: "Deletes one key of a session's memory.",
    input: MemoryKeyArgs,
    output: Deleted,
    run: (caller, { key, session_id }) =>
      Effect.flatMap(Memory, (memory) => Effect.as(memory.remove(caller.tenantId, session_id, key), new Deleted({ deleted: true }))),
    readOnly: false,
    destructive: true,
    idempotent: false
  }),
  tool({
    name: "list_memory",
    title: "List memory",
    description: "Lists every live key of a session's memory with its value.",
    input: SessionArgs,
    output: MemoryList,
    run: (caller, { session_id }) => Effect.flatMap(Memory, (memory) => memory.list(caller.tenantId, session_id)),
    readOnly: true,
    destructive: false,
    idempotent: true
  })
]

export const toolsByName: ReadonlyMap<string, Tool> = new Map(tools.map((t) => [t.name, t]))

type Json = { [key: string]: unknown }

/** Effect's markers for `unknown`/`any` carry an `$id` a validator would treat as a base URI. */
const withoutMarkerIds = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(withoutMarkerIds)
  if (value === null || typeof value !== "object") return value
  const out: Json = {}
  for (const [key, inner] of Object.entries(value)) {
    if (key === "$id" && typeof inner === "string" && inner.startsWith("/schemas/")) continue
    out[key] = withoutMarkerIds(inner)
  }
  return out
}

/**
 * A tool's input and output schemas must be objects at their root: a class's schema comes out as a
 * `$ref` into `$defs`, which is inlined here (the `$defs` stay, for the references inside). The
 * draft-07 `$schema` is dropped: the keywords used read the same under MCP's default dialect.
 */
export const objectJsonSchema = (schema: Schema.Schema.Any): Json => {
  const { $schema: _dialect, ...made } = withoutMarkerIds(JSONSchema.make(schema)) as Json
  const ref = made["$ref"]
  if (typeof ref !== "string" || !ref.startsWith("#/$defs/")) return made
  const defs = (made["$defs"] ?? {}) as Json
  const { $ref: _ref, ...rest } = made
  return { ...(defs[ref.slice("#/$defs/".length)] as Json), ...rest }
}

/**
 * What a tool answers in `structuredContent`: its REST body, or the problem object when it fails.
 * Both are declared, since clients validate `structuredContent` against the output schema even on
 * an `isError` result.
 */
const outputJsonSchema = (output: Schema.Schema.Any): Json => {
  const { $schema: _dialect, ...made } = withoutMarkerIds(JSONSchema.make(Schema.Union(output, ProblemBody))) as Json
  return { type: "object", ...made }
}

/** A tool as `tools/list` describes it (the same in both eras). */
export interface ToolDescription {
  readonly name: string
  readonly title: string
  readonly description: string
  readonly inputSchema: Json & { type: "object" }
  readonly outputSchema: Json & { type: "object" }
  readonly annotations: {
    readonly readOnlyHint: boolean
    readonly destructiveHint: boolean
    readonly idempotentHint: boolean
    readonly openWorldHint: false
  }
}

let described: ReadonlyArray<ToolDescription> | undefined

/**
 * Computed once, at the first listing rather than at start (deriving the JSON Schemas is the
 * slowest part of loading this module): the list is the same for every caller, in the table's
 * (deterministic) order.
 */
export const toolDescriptions = (): ReadonlyArray<ToolDescription> => (described ??= tools.map((t) => ({
  name: t.name,
  title: t.title,
  description: t.description,
  inputSchema: objectJsonSchema(t.input) as Json & { type: "object" },
  outputSchema: outputJsonSchema(t.output) as Json & { type: "object" },
  annotations: { readOnlyHint: t.readOnly, destructiveHint: t.destructive, idempotentHint: t.idempotent, openWorldHint: false }
})))
