import { Schema } from "effect"
import { IntegerFromString, StoredText, Timestamp, Uuid } from "./Ids.js"

export const SessionId = Uuid

export const Metadata = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
  identifier: "Metadata",
  description: "A JSON object"
})

export class Session extends Schema.Class<Session>("Session")({
  id: SessionId,
  title: Schema.NullOr(Schema.String),
  metadata: Metadata,
  created_at: Timestamp,
  updated_at: Timestamp
}) {}

export class CreateSession extends Schema.Class<CreateSession>("CreateSession")({
  id: Schema.optional(SessionId),
  title: Schema.optional(Schema.NullOr(StoredText.pipe(Schema.maxLength(512)))),
  metadata: Schema.optional(Metadata)
}) {}

export class SessionPage extends Schema.Class<SessionPage>("SessionPage")({
  data: Schema.Array(Session),
  next_cursor: Schema.NullOr(Schema.String)
}) {}

export const ListSessionsParams = Schema.Struct({
  limit: Schema.optional(IntegerFromString({ minimum: 1, maximum: 200 })),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(512)))
})
