import { Schema } from "effect"
import { ErrorRecord } from "./ErrorRecord.js"

export const BreakerStateName = Schema.Literal("closed", "open", "half_open", "forced_open", "disabled")

export class BreakerStatus extends Schema.Class<BreakerStatus>("BreakerStatus")({
  dependency: Schema.String,
  state: BreakerStateName,
  retry_after_seconds: Schema.Int,
  consecutive_failures: Schema.Int,
  window_calls: Schema.Int,
  window_failures: Schema.Int
}) {}

export const Dependency = Schema.Literal("database", "cache", "memory")

export class BreakerAction extends Schema.Class<BreakerAction>("BreakerAction")({
  action: Schema.Literal("open", "close", "disable")
}) {}

export class DependencyHealth extends Schema.Class<DependencyHealth>("DependencyHealth")({
  status: Schema.Literal("ok", "down"),
  breaker: BreakerStateName,
  latency_ms: Schema.NullOr(Schema.Number),
  kind: Schema.optional(Schema.String)
}) {}

export class HealthReport extends Schema.Class<HealthReport>("HealthReport")({
  status: Schema.Literal("ok", "degraded", "unhealthy"),
  dependencies: Schema.optional(Schema.Struct({ database: DependencyHealth, cache: DependencyHealth, memory: DependencyHealth })),
  errors: Schema.optional(
    Schema.NullOr(Schema.Struct({ recent_count: Schema.Int, unresolved_count: Schema.Int, last_error: Schema.NullOr(ErrorRecord) }))
  ),
  streams: Schema.optional(Schema.Struct({
    open: Schema.Int.annotations({ description: "Event streams (SSE and MCP) open in this process." }),
    per_key_cap: Schema.Int.annotations({ description: "BULWARK_MAX_STREAMS_PER_KEY: past it a key's next stream is 429 RATE_LIMITED." }),
    process_cap: Schema.Int.annotations({ description: "BULWARK_MAX_STREAMS: past it any next stream is 503 OVERLOADED." })
  }))
}) {}

export class RatePoint extends Schema.Class<RatePoint>("RatePoint")({
  minute: Schema.String.annotations({ description: "The minute's start (RFC 3339)." }),
  requests: Schema.Int,
  errors: Schema.Int.annotations({ description: "Responses with status 400 or more." }),
  server_errors: Schema.Int.annotations({ description: "Responses with status 500 or more." })
}) {}

export class Rates extends Schema.Class<Rates>("Rates")({
  data: Schema.Array(RatePoint).annotations({
    description: "One point per minute of the last hour, oldest first; the last is the current minute, still counting."
  })
}) {}
