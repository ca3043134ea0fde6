/**
 * A per-call timeout that does not blame the dependency for this process's own delay (SPEC §5).
 * The call is given `timeout` of the dependency's time: its wait minus the part of it during which
 * the event loop was held up (`LoopDelay`). When the deadline timer fires late because the loop
 * was busy, the call gets that time back and the loop a chance to read the reply it could not see.
 * A loop that stays busy cannot stretch a call without end: past `maxStretch` times the timeout it
 * fails anyway, marked as this process's doing.
 *
 * Built on `Clock`, so under `TestClock` (where nothing is held up) it is a plain timeout.
 */
import { Clock, Duration, Effect, Exit, Fiber } from "effect"
import { type LoopDelayShape, unmeasured } from "./LoopDelay.js"

/** What a timed-out call waited for, and whose time it was. */
export interface Overrun {
  readonly timeoutMillis: number
  readonly waitedMillis: number
  /** The part of the wait during which this process's event loop was held up. */
  readonly loopDelayMillis: number
  /** False when the wait ran out mostly because this process was busy: no evidence against the dependency. */
  readonly dependencySlow: boolean
}

/** How far a busy loop may stretch a call's wait, as a multiple of its timeout. */
export const MAX_STRETCH = 10

export const describeOverrun = (overrun: Overrun): string =>
  overrun.dependencySlow
    ? `no reply within ${overrun.timeoutMillis} ms (waited ${overrun.waitedMillis} ms, of which this process's event loop was held up ${overrun.loopDelayMillis} ms)`
    : `gave up after ${overrun.waitedMillis} ms: this process's event loop was held up ${overrun.loopDelayMillis} ms of it, so the dependency is not blamed`

/** `self`, failed with `onTimeout` once the dependency's own share of the wait reaches `timeout`. */
export const discountingLoopDelay = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  options: {
    readonly timeout: Duration.DurationInput
    readonly loop: LoopDelayShape
    readonly onTimeout: (overrun: Overrun) => E2
  }
): Effect.Effect<A, E | E2, R> => {
  const timeoutMillis = Duration.toMillis(options.timeout)
  // Nothing to give back: Effect's own timeout, which costs about half as much per call.
  if (options.loop === unmeasured) {
    return Effect.timeoutFail(self, {
      duration: options.timeout,
      onTimeout: () => options.onTimeout({ timeoutMillis, waitedMillis: timeoutMillis, loopDelayMillis: 0, dependencySlow: true })
    })
  }
  return Effect.flatMap(Clock.currentTimeMillis, (started) => {
    const deadline: Effect.Effect<never, E2> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const waitedMillis = now - started
      const loopDelayMillis = Math.min(waitedMillis, options.loop.heldUpBetween(started, now))
      const dependencyMillis = waitedMillis - loopDelayMillis
      if (dependencyMillis >= timeoutMillis || waitedMillis >= timeoutMillis * MAX_STRETCH) {
        return Effect.fail(options.onTimeout({
          timeoutMillis,
          waitedMillis,
          loopDelayMillis,
          dependencySlow: dependencyMillis >= timeoutMillis
        }))
      }
      const untilDue = Math.min(timeoutMillis - dependencyMillis, timeoutMillis * MAX_STRETCH - waitedMillis)
      return Effect.zipRight(Effect.sleep(Duration.millis(untilDue)), deadline)
    })
    // Interruptible even where the call is not (a finalizer's ledger drain): else the race would
    // wait for the whole timeout before it could interrupt the losing timer, as `Effect.timeout` avoids.
    const timer = Effect.interruptible(Effect.zipRight(Effect.sleep(Duration.millis(timeoutMillis)), deadline))
    return Effect.raceWith(self, timer, {
      onSelfDone: (exit, timerFiber): Effect.Effect<A, E | E2> => Effect.zipRight(Fiber.interrupt(timerFiber), exit),
      // A timer ended by an interruption (a shutdown reaching the call's uninterruptible region) is
      // no timeout: the call answers for itself.
      onOtherDone: (exit, callFiber): Effect.Effect<A, E | E2> =>
        Exit.isInterrupted(exit) ? Fiber.join(callFiber) : Effect.zipRight(Fiber.interrupt(callFiber), exit)
    })
  })
}
