/**
 * `OTEL_TRACES_SAMPLER_ARG` as the standard variable means it with the default parent-based sampler
 * (`parentbased_traceidratio`): a trace that starts here is recorded with that probability, decided
 * from its trace id; a span under a parent follows the parent, including a caller's `traceparent`
 * (its sampled flag). A span not sampled still has its ids (they are in the ledger, the logs and
 * `X-Trace-Id`); it is only not exported.
 */
import { type Exit, Option, Tracer } from "effect"

const RANDOM_BITS = 56
const RANDOM_RANGE = 2 ** RANDOM_BITS

/**
 * Whether a trace starting here is recorded: the low 56 bits of its id (the random part in W3C
 * trace context level 2) below `ratio` of their range, so every service deciding by the same rule
 * keeps the same traces.
 */
export const sampledByRatio = (traceId: string, ratio: number): boolean => {
  if (ratio >= 1) return true
  if (ratio <= 0) return false
  const random = BigInt(`0x${traceId.slice(-RANDOM_BITS / 4)}`)
  return random < BigInt(Math.floor(ratio * RANDOM_RANGE))
}

/** The span as it is, but not sampled: ending it records its end and exports nothing. */
const unsampled = (span: Tracer.Span): Tracer.Span =>
  Object.create(span, {
    sampled: { value: false },
    end: {
      value(this: { status: Tracer.SpanStatus }, endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
        this.status = { _tag: "Ended", startTime: span.status.startTime, endTime, exit }
      }
    }
  }) as Tracer.Span

/** `tracer` with parent-based ratio sampling (at a ratio of 1 a caller's "not sampled" is still followed). */
export const parentBasedRatio = (tracer: Tracer.Tracer, ratio: number): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = tracer.span(name, parent, context, links, startTime, kind, options)
      const sampled = Option.isSome(parent) ? parent.value.sampled : sampledByRatio(span.traceId, ratio)
      return sampled ? span : unsampled(span)
    },
    context: (f, fiber) => tracer.context(f, fiber)
  })
