/**
 * Requests and error responses per minute over the last hour, for the console's chart (SPEC §12).
 * Counted from `http.server.request.duration` (src/telemetry/Metrics.ts), which the server span records, so nothing on the
 * request path changes: a fiber reads the totals every few seconds and adds what is new to the
 * current minute. This process's own counts, like `/metrics`.
 */
import { Clock, Context, Effect, Layer, Metric, MetricState, Schedule } from "effect"
import * as Supervised from "../../layers/resilience/Supervised.js"

export const RATE_MINUTES = 60
const MINUTE_MILLIS = 60_000

export interface RatePoint {
  /** The minute's start, RFC 3339. */
  readonly minute: string
  readonly requests: number
  /** Responses with status 400 or more (every one of them ledgered). */
  readonly errors: number
  readonly server_errors: number
}

interface Totals {
  readonly requests: number
  readonly errors: number
  readonly serverErrors: number
}

const STATUS_LABEL = "http.response.status_code"
const REQUEST_DURATION = "http.server.request.duration"

const readTotals = Effect.map(Metric.snapshot, (pairs): Totals => {
  let requests = 0
  let errors = 0
  let serverErrors = 0
  for (const pair of pairs) {
    if (pair.metricKey.name !== REQUEST_DURATION || !MetricState.isHistogramState(pair.metricState)) continue
    const count = pair.metricState.count
    const status = Number(pair.metricKey.tags.find((tag) => tag.key === STATUS_LABEL)?.value)
    requests += count
    if (status >= 400) errors += count
    if (status >= 500) serverErrors += count
  }
  return { requests, errors, serverErrors }
})

const make = Effect.gen(function*() {
  const minutes = new Map<number, { requests: number; errors: number; serverErrors: number }>()
  let last = yield* readTotals

  /** Adds what was counted since the last sample to the current minute, and forgets minutes past the hour. */
  const sample = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const totals = yield* readTotals
    const minute = Math.floor(now / MINUTE_MILLIS) * MINUTE_MILLIS
    const bucket = minutes.get(minute) ?? { requests: 0, errors: 0, serverErrors: 0 }
    bucket.requests += Math.max(0, totals.requests - last.requests)
    bucket.errors += Math.max(0, totals.errors - last.errors)
    bucket.serverErrors += Math.max(0, totals.serverErrors - last.serverErrors)
    minutes.set(minute, bucket)
    last = totals
    for (const key of minutes.keys()) if (key <= minute - RATE_MINUTES * MINUTE_MILLIS) minutes.delete(key)
    return minute
  })

  yield* sample.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Supervised.loop("request-rates"), Effect.forkScoped)

  /** The last hour, oldest minute first; the last point is the current, unfinished minute. */
  const lastHour = Effect.map(sample, (current): ReadonlyArray<RatePoint> =>
    Array.from({ length: RATE_MINUTES }, (_, i) => {
      const minute = current - (RATE_MINUTES - 1 - i) * MINUTE_MILLIS
      const bucket = minutes.get(minute)
      return {
        minute: new Date(minute).toISOString(),
        requests: bucket?.requests ?? 0,
        errors: bucket?.errors ?? 0,
        server_errors: bucket?.serverErrors ?? 0
      }
    }))

  return { lastHour } as const
})

export class RequestRates extends Context.Tag("bulwark/RequestRates")<RequestRates, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(RequestRates, make)
}
