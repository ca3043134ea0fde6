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

/**
 * A whole number sent as text (a query parameter or a header): digits only, within its bounds, and
 * documented as the integer it is rather than as a string.
 */
export const IntegerFromString = (bounds: { readonly minimum: number; readonly maximum?: number }) =>
  Schema.String.pipe(
    Schema.pattern(/^[0-9]{1,15}$/, { message: () => "must be a whole number" }),
    Schema.compose(Schema.NumberFromString),
    Schema.int(),
    bounds.maximum === undefined ? Schema.greaterThanOrEqualTo(bounds.minimum) : Schema.between(bounds.minimum, bounds.maximum),
    Schema.annotations({
      jsonSchema: bounds.maximum === undefined
        ? { type: "integer", minimum: bounds.minimum }
        : { type: "integer", minimum: bounds.minimum, maximum: bounds.maximum }
    })
  )

const RFC3339 = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$/i

/** An RFC 3339 date-time sent as text (SPEC §4), decoded to a `Date`. */
export const DateTimeFromString = Schema.String.pipe(
  Schema.pattern(RFC3339, { message: () => "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z" }),
  Schema.compose(Schema.DateFromString),
  Schema.validDate(),
  Schema.annotations({ jsonSchema: { type: "string", format: "date-time" } })
)

/**
 * Text stored as it is sent: PostgreSQL's text cannot hold U+0000, so neither database is given it
 * (the same 400 on both). JSON values are stored escaped and need no such rule.
 */
export const StoredText = Schema.String.pipe(
  Schema.filter((text) => !text.includes("\u0000"), { message: () => "must not contain the character U+0000" })
)
