import { Schema } from "effect"
import { Timestamp, Uuid } from "./Ids.js"

export const ErrorType = Schema.Literal("http", "stream", "mcp", "database", "cache", "memory", "validation", "auth", "internal")
export const Severity = Schema.Literal("critical", "error", "warning")

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
  request_payload: Schema.NullOr(Schema.Unknown),
  resolved: Schema.Boolean,
  resolved_at: Schema.NullOr(Timestamp),
  notes: Schema.NullOr(Schema.String)
}) {}

export class ErrorList extends Schema.Class<ErrorList>("ErrorList")({ data: Schema.Array(ErrorRecord) }) {}

const BooleanFromString = Schema.transformLiterals(["true", true], ["false", false])

export const ListErrorsParams = Schema.Struct({
  type: Schema.optional(ErrorType),
  code: Schema.optional(Schema.String.pipe(Schema.pattern(/^[A-Z_]{1,64}$/))),
  severity: Schema.optional(Severity),
  session_id: Schema.optional(Uuid),
  resolved: Schema.optional(BooleanFromString),
  since: Schema.optional(Schema.DateFromString.pipe(Schema.validDate())),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)))
})
export type ListErrorsFilter = Schema.Schema.Type<typeof ListErrorsParams>

export const StatsParams = Schema.Struct({
  since: Schema.optional(Schema.DateFromString.pipe(Schema.validDate()))
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
