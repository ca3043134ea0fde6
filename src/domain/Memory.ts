import { Schema } from "effect"
import { Timestamp } from "./Ids.js"

/** A memory value, encoded as JSON, may be at most this many bytes (SPEC §3: 413 beyond it). */
export const MAX_VALUE_BYTES = 64 * 1024

/** A year: a longer-lived value should not carry a TTL at all. */
export const MAX_TTL_SECONDS = 365 * 24 * 60 * 60

export const MemoryKey = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._:-]{1,128}$/, { message: () => "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -" }),
  Schema.annotations({ identifier: "MemoryKey" })
)

export class MemoryEntry extends Schema.Class<MemoryEntry>("MemoryEntry")({
  key: MemoryKey,
  value: Schema.Unknown,
  expires_at: Schema.NullOr(Timestamp),
  updated_at: Timestamp
}) {}

export class PutMemory extends Schema.Class<PutMemory>("PutMemory")({
  // `Unknown` alone would accept a body without `value`; null is a value, absence is not.
  value: Schema.Unknown.pipe(
    Schema.filter((value) => value !== undefined, { message: () => "is required (any JSON value, null included)" })
  ).annotations({ description: "Any JSON value (at most 64 KiB encoded)." }),
  ttl_seconds: Schema.optional(Schema.Int.pipe(Schema.between(1, MAX_TTL_SECONDS)))
}) {}

export class MemoryList extends Schema.Class<MemoryList>("MemoryList")({
  data: Schema.Array(MemoryEntry)
}) {}
