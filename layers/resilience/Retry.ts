/**
 * Retries for transient failures (SPEC §5): jittered exponential backoff bounded by attempts and by
 * elapsed time, and a retry budget: over a sliding window, retries may add at most `ratio` (20%) to
 * a dependency's call volume, so a dead dependency is never hit with several times the traffic.
 */
import { Clock, Duration, Effect, Metric, MetricLabel, Ref, Schedule } from "effect"
import { retriesTotal } from "../../src/telemetry/Metrics.js"

export interface RetryBudgetOptions {
  /** Retries allowed per first attempt over the window (0.2 = at most 20% more calls). */
  readonly ratio: number
  readonly window: Duration.DurationInput
  /**
   * Retries always allowed per window, so that a lone request at low traffic can still be retried;
   * under load the ratio is what binds.
   */
  readonly minRetries?: number
}

/** Calls and retries counted in one-second buckets over the window. */
export const makeBudget = (options: RetryBudgetOptions) =>
  Effect.gen(function*() {
    const windowMillis = Duration.toMillis(options.window)
    const buckets = yield* Ref.make<ReadonlyArray<{ readonly second: number; calls: number; retries: number }>>([])

    const inWindow = (now: number) => (bucket: { readonly second: number }) => bucket.second * 1000 > now - windowMillis

    const bump = (field: "calls" | "retries") =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.update(buckets, (current) => {
          const second = Math.floor(now / 1000)
          const kept = current.filter(inWindow(now))
          const last = kept[kept.length - 1]
          if (last !== undefined && last.second === second) {
            return kept.map((bucket) => (bucket === last ? { ...bucket, [field]: bucket[field] + 1 } : bucket))
          }
          return [...kept, { second, calls: field === "calls" ? 1 : 0, retries: field === "retries" ? 1 : 0 }]
        }))

    const recordCall = bump("calls")

    /** Takes one retry from the budget if the window allows it. */
    const tryRetry = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(buckets, (current) => {
        const kept = current.filter(inWindow(now))
        const calls = kept.reduce((sum, bucket) => sum + bucket.calls, 0)
        const retries = kept.reduce((sum, bucket) => sum + bucket.retries, 0)
        if (retries + 1 > Math.max(options.minRetries ?? 0, calls * options.ratio)) return [false, kept] as const
        const second = Math.floor(now / 1000)
        const last = kept[kept.length - 1]
        const next = last !== undefined && last.second === second
          ? kept.map((bucket) => (bucket === last ? { ...bucket, retries: bucket.retries + 1 } : bucket))
          : [...kept, { second, calls: 0, retries: 1 }]
        return [true, next] as const
      }))

    const usage = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(Ref.get(buckets), (current) => {
        const kept = current.filter(inWindow(now))
        return { calls: kept.reduce((sum, b) => sum + b.calls, 0), retries: kept.reduce((sum, b) => sum + b.retries, 0) }
      }))

    return { recordCall, tryRetry, usage } as const
  })

export type RetryBudget = Effect.Effect.Success<ReturnType<typeof makeBudget>>

export interface RetryOptions {
  readonly dependency: string
  readonly isTransient: (error: unknown) => boolean
  readonly baseDelay: Duration.DurationInput
  readonly maxRetries: number
  readonly maxElapsed: Duration.DurationInput
  readonly budget: RetryBudget
}

/** Runs `effect`, retrying transient failures while the schedule and the budget allow. */
export const retrying = (options: RetryOptions) => {
  const schedule = Schedule.exponential(options.baseDelay).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(options.maxRetries)),
    Schedule.upTo(options.maxElapsed)
  )
  const counted = Metric.taggedWithLabels(retriesTotal, [MetricLabel.make("dependency", options.dependency)])
  return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.zipRight(
      options.budget.recordCall,
      Effect.retry(effect, {
        schedule,
        while: (error: E) =>
          options.isTransient(error)
            ? Effect.tap(options.budget.tryRetry, (allowed) => (allowed ? Metric.increment(counted) : Effect.void))
            : Effect.succeed(false)
      })
    )
}
