import { Schema } from "effect"

/** A UUID in any case on the way in, lowercase everywhere after. */
export const Uuid = Schema.Lowercase.pipe(
  Schema.compose(Schema.UUID),
  Schema.annotations({ identifier: "Uuid", description: "A UUID", jsonSchema: { type: "string", format: "uuid" } })
)

export const Timestamp = Schema.String.annotations({
  description: "RFC 3339 UTC timestamp",
  jsonSchema: { type: "string", format: "date-time" }
})
