/**
 * W3C Trace Context read from a carrier other than HTTP headers: MCP carries it in a request's
 * `params._meta` (SEP-414, OpenTelemetry's MCP conventions). A `traceparent` that does not follow
 * the W3C format is ignored, as the format asks: the request starts a trace of its own. `tracestate`
 * is not read: it only matters to a service that passes it on, and Bulwark calls no traced service
 * (its OTLP export has no field for it either).
 */
import { Tracer } from "effect"

/** `version-traceid-parentid-flags`, lower-case hex; version `ff` is invalid and ids of zeros mean none. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZERO_TRACE_ID = "0".repeat(32)
const ZERO_SPAN_ID = "0".repeat(16)

/** The remote parent a `traceparent` value names, or `undefined` for anything that is not one. */
export const parseTraceparent = (value: unknown): Tracer.ExternalSpan | undefined => {
  if (typeof value !== "string" || value.length > 512) return undefined
  const match = TRACEPARENT.exec(value)
  if (match === null) return undefined
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined]
  // Version 00 has exactly four fields; a later version may add some, read as 00 reads its first four.
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined
  return Tracer.externalSpan({ traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 })
}

/** The remote parent named by the `traceparent` in an MCP request's `_meta`, if it carries a valid one. */
export const fromMeta = (meta: unknown): Tracer.ExternalSpan | undefined =>
  typeof meta === "object" && meta !== null && "traceparent" in meta ? parseTraceparent(meta.traceparent) : undefined
