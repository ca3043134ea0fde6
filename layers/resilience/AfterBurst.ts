/**
 * Work worth doing once after a burst, not during it: after `threshold` events since it last ran,
 * once none has come for `quiet` (each one meanwhile postpones it). The server uses it for a full
 * collection of the heap after thousands of event streams closed, and after a burst of requests:
 * the engine collects that garbage only when it next chooses to, and the process holds hundreds of
 * megabytes meanwhile; the collection pauses the event loop, so it runs once per burst, when quiet.
 */
import { Duration, Effect, FiberSet, type Scope } from "effect"

export interface AfterBurstOptions {
  /** Events since it last ran that make running again worth it. */
  readonly threshold: number
  /** How long no event must have come before it runs. */
  readonly quiet: Duration.DurationInput
  readonly run: Effect.Effect<void>
}

export interface AfterBurst {
  /** One more event; plain and synchronous, as the callers are plain code. */
  readonly record: () => void
}

export const make = (options: AfterBurstOptions): Effect.Effect<AfterBurst, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    // Its fibers end with the owner's scope.
    const fork = yield* FiberSet.makeRuntime<never, void, never>()
    const quietMillis = Duration.toMillis(options.quiet)
    let count = 0
    let lastAt = 0
    let pending = false

    // One fiber per burst, which sleeps until the quiet time after the newest event (not one timer per event).
    const whenQuiet: Effect.Effect<void> = Effect.suspend(() => {
      const left = lastAt + quietMillis - clock.unsafeCurrentTimeMillis()
      if (left > 0) return Effect.zipRight(Effect.sleep(left), whenQuiet)
      pending = false
      count = 0
      return options.run
    })

    return {
      record: () => {
        count += 1
        lastAt = clock.unsafeCurrentTimeMillis()
        if (count >= options.threshold && !pending) {
          pending = true
          fork(whenQuiet)
        }
      }
    }
  })

/**
 * A full collection of the heap, logged with its pause and what it handed back. `Bun.gc(false)` (a
 * collection the engine may defer) did not hand the memory back within 3 s after a mass close.
 */
export const fullCollection = (reason: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    const rssBefore = process.memoryUsage.rss()
    const startedAt = performance.now()
    Bun.gc(true)
    const pauseMillis = performance.now() - startedAt
    const megabytes = (bytes: number) => Math.round(bytes / 1024 / 1024)
    return Effect.logInfo(`full collection ${reason}`).pipe(Effect.annotateLogs({
      pause_ms: Math.round(pauseMillis * 10) / 10,
      rss_before_mb: megabytes(rssBefore),
      rss_after_mb: megabytes(process.memoryUsage.rss())
    }))
  })
