/**
 * Background work that never ends quietly (SPEC §5). A loop that fails or dies is logged at error
 * with its (sanitised) cause, counted (`bulwark_background_restarts_total{loop}`), handed to the
 * process's failure recorder (the error ledger, once it is built), and started again after an
 * exponential backoff. Only the scope closing ends it.
 */
import { Cause, Context, Duration, Effect, Layer, Metric, Option, Schedule, type Scope } from "effect"
import { backgroundRestartsTotal } from "../../src/telemetry/Metrics.js"
import { sanitizeText } from "../../src/telemetry/Sanitize.js"

export type Recorder = (loop: string, cause: Cause.Cause<unknown>) => Effect.Effect<void>

export interface BackgroundFailuresShape {
  readonly report: Recorder
  /**
   * Sets who records the failures for as long as the scope lasts. The recorder (the ledger) is built
   * above the database and the cache whose loops it must hear about, so it joins late; until then a
   * failure is logged and counted only.
   */
  readonly attach: (recorder: Recorder) => Effect.Effect<void, never, Scope.Scope>
}

export class BackgroundFailures extends Context.Tag("bulwark/BackgroundFailures")<BackgroundFailures, BackgroundFailuresShape>() {}

export const layer = Layer.sync(BackgroundFailures, (): BackgroundFailuresShape => {
  let recorder: Recorder | undefined
  return {
    report: (loop, cause) => Effect.suspend(() => (recorder === undefined ? Effect.void : recorder(loop, cause))),
    attach: (next) =>
      Effect.acquireRelease(Effect.sync(() => (recorder = next)), () => Effect.sync(() => (recorder = undefined))).pipe(Effect.asVoid)
  }
})

export interface Backoff {
  readonly first: Duration.DurationInput
  readonly most: Duration.DurationInput
}

export const defaultBackoff: Backoff = { first: "100 millis", most: "30 seconds" }

/** Runs `body` as the background loop `name`, restarted after every failure or defect (see above). */
export const loop = (name: string, backoff: Backoff = defaultBackoff) => <A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, never, R> => {
  const report = (cause: Cause.Cause<E>) =>
    Effect.gen(function*() {
      yield* Effect.logError(`background loop ${name} failed; it restarts after a backoff`).pipe(
        Effect.annotateLogs({ loop: name, cause: sanitizeText(Cause.pretty(cause)) })
      )
      // Restarts are rare: the labelled metric is built when one happens, not kept in a module-level map.
      yield* Metric.increment(Metric.tagged(backgroundRestartsTotal, "loop", name))
      const failures = yield* Effect.serviceOption(BackgroundFailures)
      if (Option.isSome(failures)) yield* failures.value.report(name, cause)
    })
  // Capped exponential: a loop that keeps dying costs one attempt per `most`, not a busy spin.
  const schedule = Schedule.exponential(backoff.first).pipe(Schedule.either(Schedule.spaced(backoff.most)))
  return body.pipe(
    Effect.sandbox,
    Effect.tapError(report),
    Effect.retry({ schedule, while: (cause) => !Cause.isInterruptedOnly(cause) }),
    // Only an interruption gets here (the scope closing): the loop ends as it should.
    Effect.catchAll(() => Effect.interrupt)
  )
}
