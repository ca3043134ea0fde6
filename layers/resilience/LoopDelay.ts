/**
 * How long this process's own event loop was held up (SPEC §5: a client-side timeout is evidence
 * against a dependency only when the dependency was slow, not when this process was busy).
 *
 * A timer re-armed every few milliseconds notes how late it fires: a late tick means the loop could
 * not run ready work (a reply already on its socket included) from when the tick was due until it
 * ran. Those held-up intervals are kept for a while, and a call's timeout and slow-call rules
 * subtract the part of its own wait that falls inside them. Every tick's lateness is also the
 * `bulwark_event_loop_delay_seconds` histogram.
 *
 * The measure is wall time: it reads `Date.now`, as the live `Clock` does. Without the monitor
 * (tests under `TestClock`, the CLI) nothing is subtracted.
 */
import { Context, Effect, Layer } from "effect"
import { eventLoopDelay } from "../../src/telemetry/Metrics.js"

export interface LoopDelayShape {
  /** Milliseconds of `[from, to]` (epoch milliseconds) during which the event loop was held up. */
  readonly heldUpBetween: (from: number, to: number) => number
}

/** Nothing is subtracted. */
export const unmeasured: LoopDelayShape = { heldUpBetween: () => 0 }

export class LoopDelay extends Context.Reference<LoopDelay>()("bulwark/LoopDelay", { defaultValue: () => unmeasured }) {}

export interface MonitorOptions {
  /** How often the loop is sampled; the resolution of the measure. */
  readonly intervalMillis: number
  /** How long held-up intervals are kept: longer than any call waits. */
  readonly historyMillis: number
}

/** A tick this late or later is a hold-up; below it is timer jitter. */
const MIN_LATENESS_MILLIS = 2

export const defaultMonitorOptions: MonitorOptions = { intervalMillis: 10, historyMillis: 60_000 }

/** Samples the loop until the scope closes. */
export const monitor = (options: MonitorOptions = defaultMonitorOptions) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        // Held-up intervals, oldest first, as parallel arrays of start and end.
        const starts: Array<number> = []
        const ends: Array<number> = []
        /** Index of the oldest hold-up still kept. */
        let oldest = 0
        let due = Date.now() + options.intervalMillis
        let timer: ReturnType<typeof setTimeout> | undefined
        const tick = () => {
          const now = Date.now()
          eventLoopDelay.unsafeUpdate(Math.max(0, now - due) / 1000, [])
          if (now - due >= MIN_LATENESS_MILLIS) {
            starts.push(due)
            ends.push(now)
          }
          // Forget what is older than the history, in bulk: a busy loop adds a hold-up every tick.
          while (oldest < ends.length && ends[oldest]! < now - options.historyMillis) oldest++
          if (oldest >= 1024 && oldest * 2 >= ends.length) {
            starts.splice(0, oldest)
            ends.splice(0, oldest)
            oldest = 0
          }
          due = now + options.intervalMillis
          timer = setTimeout(tick, options.intervalMillis)
          // A monitor never keeps the process alive by itself.
          timer.unref()
        }
        timer = setTimeout(tick, options.intervalMillis)
        timer.unref()
        const heldUpBetween = (from: number, to: number): number => {
          let total = 0
          // The hold-up in progress: the tick is due but has not run (the caller runs instead of it).
          const now = Date.now()
          if (now - due >= MIN_LATENESS_MILLIS) total += overlap(due, now, from, to)
          for (let i = ends.length - 1; i >= oldest && ends[i]! > from; i--) total += overlap(starts[i]!, ends[i]!, from, to)
          return total
        }
        return { heldUpBetween, stop: () => clearTimeout(timer) }
      }),
      (sampler) => Effect.sync(sampler.stop)
    ),
    (sampler): LoopDelayShape => ({ heldUpBetween: sampler.heldUpBetween })
  )

const overlap = (start: number, end: number, from: number, to: number): number => Math.max(0, Math.min(end, to) - Math.max(start, from))

/** The monitor for the life of the layer, as the `LoopDelay` every breaker built under it reads. */
export const layer = (options: MonitorOptions = defaultMonitorOptions) => Layer.scoped(LoopDelay, monitor(options))
