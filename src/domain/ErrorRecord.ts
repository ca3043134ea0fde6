import { Schema } from "effect"
import { PayloadKinds } from "../telemetry/Sanitize.js"
import { DateTimeFromString, IntegerFromString, Timestamp, Uuid } from "./Ids.js"

export const ErrorType = Schema.Literal("http", "stream", "mcp", "database", "cache", "memory", "validation", "auth", "internal")
export const Severity = Schema.Literal("critical", "error", "warning")

/**
 * How the ledger kept a request body (see `sanitizePayload`): `json` (the sanitised body), `truncated`
 * (a JSON body over 8 KiB: its first 8 KiB as text), `text` (not JSON), `binary` (not UTF-8, decoded
 * with replacement characters), or `unreadable` (the stored payload did not read back as what it
 * was stored as; it is shown as stored, and that failure is itself ledgered).
 */
export const RequestPayloadKind = Schema.Literal(...PayloadKinds, "unreadable").annotations({ identifier: "RequestPayloadKind" })

/** One row of the error ledger (SPEC §6) as operators see it. */
export class ErrorRecord extends Schema.Class<ErrorRecord>("ErrorRecord")({
  error_id: Uuid,
  occurred_at: Timestamp,
  type: ErrorType,
  code: Schema.String,
  status: Schema.Int,
  message: Schema.String,
  stack: Schema.NullOr(Schema.String),
  fingerprint: Schema.String,
  severity: Severity,
  tenant_id: Schema.NullOr(Schema.String),
  session_id: Schema.NullOr(Schema.String),
  request_id: Schema.NullOr(Schema.String),
  trace_id: Schema.NullOr(Schema.String),
  method: Schema.NullOr(Schema.String),
  route: Schema.NullOr(Schema.String),
  user_agent: Schema.NullOr(Schema.String),
  request_payload: Schema.NullOr(Schema.Unknown).annotations({
    description: "The request body, sanitised: a JSON value when `request_payload_kind` is `json`, else a string."
  }),
  request_payload_kind: Schema.NullOr(RequestPayloadKind),
  resolved: Schema.Boolean,
  resolved_at: Schema.NullOr(Timestamp),
  notes: Schema.NullOr(Schema.String),
  unreadable_fields: Schema.optional(Schema.Array(Schema.String)).annotations({
    description:
      "Only on a stored row that did not decode: the fields that could not be read, each shown as null where the field allows it, else as `internal`, `critical`, 0, false or an empty string."
  })
}) {}

export class ErrorList extends Schema.Class<ErrorList>("ErrorList")({ data: Schema.Array(ErrorRecord) }) {}

const BooleanFromString = Schema.transformLiterals(["true", true], ["false", false])

export const ListErrorsParams = Schema.Struct({
  type: Schema.optional(ErrorType),
  code: Schema.optional(Schema.String.pipe(Schema.pattern(/^[A-Z_]{1,64}$/))),
  severity: Schema.optional(Severity),
  session_id: Schema.optional(Uuid),
  resolved: Schema.optional(BooleanFromString),
  since: Schema.optional(DateTimeFromString),
  limit: Schema.optional(IntegerFromString({ minimum: 1, maximum: 500 }))
})
export type ListErrorsFilter = Schema.Schema.Type<typeof ListErrorsParams>

export const StatsParams = Schema.Struct({
  since: Schema.optional(DateTimeFromString)
})

export class ErrorStats extends Schema.Class<ErrorStats>("ErrorStats")({
  since: Schema.NullOr(Timestamp),
  total: Schema.Int,
  by_code: Schema.Record({ key: Schema.String, value: Schema.Int }),
  by_status: Schema.Record({ key: Schema.String, value: Schema.Int }),
  by_severity: Schema.Record({ key: Schema.String, value: Schema.Int }),
  unresolved_count: Schema.Int,
  last_error: Schema.NullOr(ErrorRecord)
}) {}

export class ResolveError extends Schema.Class<ResolveError>("ResolveError")({
  notes: Schema.optional(Schema.String.pipe(Schema.maxLength(4096)))
}) {}

/** Errors of one fingerprint (SPEC §6), like an issue in an error tracker. */
export class ErrorGroup extends Schema.Class<ErrorGroup>("ErrorGroup")({
  fingerprint: Schema.String,
  code: Schema.String,
  status: Schema.Int,
  type: ErrorType,
  route: Schema.NullOr(Schema.String),
  severity: Severity,
  count: Schema.Int,
  first_seen: Timestamp,
  last_seen: Timestamp,
  last_error_id: Uuid,
  unresolved_count: Schema.Int,
  trend: Schema.Array(Schema.Int).annotations({
    description: "Errors of this group in each of the last 24 hours (UTC clock hours), oldest first; the last is the current hour."
  })
}) {}

export class ErrorGroupList extends Schema.Class<ErrorGroupList>("ErrorGroupList")({ data: Schema.Array(ErrorGroup) }) {}

export const Fingerprint = Schema.String.pipe(Schema.pattern(/^[0-9a-f]{1,64}$/)).annotations({
  description: "An error group's fingerprint (lowercase hex)."
})

export const ListGroupsParams = Schema.Struct({
  since: Schema.optional(DateTimeFromString),
  resolved: Schema.optional(BooleanFromString),
  code: Schema.optional(Schema.String.pipe(Schema.pattern(/^[A-Z_]{1,64}$/))),
  type: Schema.optional(ErrorType),
  severity: Schema.optional(Severity),
  route: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(512))),
  limit: Schema.optional(IntegerFromString({ minimum: 1, maximum: 500 }))
})
export type ListGroupsFilter = Schema.Schema.Type<typeof ListGroupsParams>
