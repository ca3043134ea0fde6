import { Schema } from "effect"
import { IntegerFromString, StoredText, Timestamp, Uuid } from "./Ids.js"
import { Metadata, SessionId } from "./Session.js"

/** A message's content may be at most this many bytes of UTF-8 (SPEC §3: 413 beyond it). */
export const MAX_CONTENT_BYTES = 64 * 1024

export const AgentId = StoredText.pipe(
  Schema.minLength(1),
  Schema.maxLength(128),
  Schema.annotations({ identifier: "AgentId", description: "The agent posting; the key must allow it (\"*\" allows all)." })
)

/** Position of a message in its session: 1, 2, 3, ... with no gaps or repeats. */
export const Seq = Schema.Int.pipe(Schema.positive(), Schema.annotations({ identifier: "Seq" }))

export class Message extends Schema.Class<Message>("Message")({
  id: Uuid,
  session_id: SessionId,
  seq: Seq,
  agent_id: AgentId,
  content: Schema.String,
  metadata: Metadata,
  created_at: Timestamp
}) {}

/** The content's byte limit is checked by the service, so that it answers 413 rather than 400. */
export class PostMessage extends Schema.Class<PostMessage>("PostMessage")({
  agent_id: AgentId,
  content: StoredText,
  metadata: Schema.optional(Metadata)
}) {}

export class MessagePage extends Schema.Class<MessagePage>("MessagePage")({
  data: Schema.Array(Message),
  next_after: Schema.NullOr(Schema.Int).annotations({ description: "Pass as `after` for the next page; null on the last page." })
}) {}

const SeqCursor = IntegerFromString({ minimum: 0 })

export const ListMessagesParams = Schema.Struct({
  after: Schema.optional(SeqCursor.annotations({ description: "Only messages with a greater seq." })),
  limit: Schema.optional(IntegerFromString({ minimum: 1, maximum: 200 }))
})

/** Where an event stream starts: after `Last-Event-ID` (a reconnecting EventSource) or `?after=`. */
export const EventsHeaders = Schema.Struct({
  "last-event-id": Schema.optional(SeqCursor.annotations({ description: "The seq of the last event received; the stream resumes after it." }))
})

export const EventsParams = Schema.Struct({
  after: Schema.optional(SeqCursor.annotations({ description: "Start after this seq (for clients that cannot send Last-Event-ID)." }))
})
