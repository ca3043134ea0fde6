/**
 * A circuit breaker per dependency (SPEC §5), built on `Clock` so tests drive it with
 * `TestClock`. States: closed, open, half-open, and the operators' forced-open and disabled.
 *
 * Trips on any of: N consecutive failures; a failure rate over the last `windowSize` calls once
 * `minimumCalls` are in the window; a slow-call rate over the same window. While open every call
 * fails at once with `Retry-After` = time left open. After the open time, up to
 * `halfOpenMaxProbes` concurrent probes are admitted and the rest rejected at once; a probe that
 * hangs is cut by the per-call timeout and counts as a failure. A failed probe re-opens with the
 * open duration doubled (up to `maxOpenDuration`); a good one closes the breaker.
 *
 * Only evidence about the dependency moves the breaker: a success, or a failure for which
 * `isFailure` holds (it is unwell). Any other outcome (a 404, a constraint violation, a defect, which
 * is our bug, an interruption) is no evidence either way: it neither counts as a failure nor closes
 * a half-open breaker. Time is judged the same way: the call timeout and the slow-call rule count
 * only the dependency's share of a call's wait, not the time this process's own event loop was held
 * up (`LoopDelay`, `Timeout.discountingLoopDelay`).
 */
import { Clock, Duration, Effect, type Exit, Metric, MetricLabel } from "effect"
import * as LoopDelay from "./LoopDelay.js"
import { discountingLoopDelay, type Overrun } from "./Timeout.js"
import { breakerState, breakerTransitionsTotal, dependencyUp } from "../../src/telemetry/Metrics.js"

export type BreakerStateName = "closed" | "open" | "half_open" | "forced_open" | "disabled"

type State =
  | { readonly _tag: "closed"; readonly consecutiveFailures: number; readonly window: ReadonlyArray<Outcome> }
  | { readonly _tag: "open"; readonly until: number; readonly openMillis: number }
  | { readonly _tag: "half_open"; readonly probes: number; readonly openMillis: number }
  | { readonly _tag: "forced_open" }
  | { readonly _tag: "disabled" }

interface Outcome {
  readonly failed: boolean
  readonly slow: boolean
}

export interface BreakerOptions<E> {
  readonly dependency: string
  readonly consecutiveFailures: number
  readonly failureRate: number
  readonly slowCallRate: number
  readonly slowCallDuration: Duration.DurationInput
  readonly windowSize: number
  readonly minimumCalls: number
  readonly openDuration: Duration.DurationInput
  readonly maxOpenDuration: Duration.DurationInput
  readonly halfOpenMaxProbes: number
  readonly callTimeout: Duration.DurationInput
  /**
   * The dependency's calls run synchronously on this process's event loop (SQLite): a hold-up of
   * the loop during a call may be the call itself, so none of it is discounted from its time.
   */
  readonly runsOnTheLoop?: boolean
  /** Whether an error means the dependency is unwell (and so counts against it). */
  readonly isFailure: (error: unknown) => boolean
  /** The error a rejected call fails with; `retryAfterSeconds` is the time left open. */
  readonly rejected: (retryAfterSeconds: number) => E
  /** The error a call cut by `callTimeout` fails with; `operation` is the one `run` was given. */
  readonly timedOut: (overrun: Overrun, operation: string | undefined) => E
}

export interface BreakerStatus {
  readonly state: BreakerStateName
  /** Seconds until a probe is admitted; 0 unless open. */
  readonly retryAfterSeconds: number
  readonly consecutiveFailures: number
  readonly windowCalls: number
  readonly windowFailures: number
}

const STATE_VALUE: Record<BreakerStateName, number> = { closed: 0, half_open: 1, open: 2, forced_open: 3, disabled: 4 }

type Admission =
  | { readonly _tag: "run"; readonly probe: boolean; readonly tracked: boolean }
  | { readonly _tag: "reject"; readonly retryAfterSeconds: number }

/** The cause a rejection carries, for the ledger and logs: why no call was made. */
export const breakerOpenCause = (dependency: string): string =>
  `the ${dependency} circuit breaker is open: the call was refused without reaching the ${dependency}`

const closedState: State = { _tag: "closed", consecutiveFailures: 0, window: [] }

export const make = <E>(options: BreakerOptions<E>) =>
  Effect.gen(function*() {
    // A plain cell rather than a `Ref`: every change is one synchronous step either way, and
    // `rejectsAt` must read it without running an effect.
    let state: State = closedState
    const modify = <A>(f: (current: State) => readonly [A, State]): Effect.Effect<A> =>
      Effect.sync(() => {
        const [result, next] = f(state)
        state = next
        return result
      })
    const baseOpenMillis = Duration.toMillis(options.openDuration)
    const maxOpenMillis = Duration.toMillis(options.maxOpenDuration)
    const slowMillis = Duration.toMillis(options.slowCallDuration)
    const loop = options.runsOnTheLoop === true ? LoopDelay.unmeasured : yield* LoopDelay.LoopDelay
    const dependencyLabel = MetricLabel.make("dependency", options.dependency)
    const stateGauge = Metric.taggedWithLabels(breakerState, [dependencyLabel])
    const upGauge = Metric.taggedWithLabels(dependencyUp, [dependencyLabel])
    yield* Metric.set(stateGauge, STATE_VALUE.closed)

    const transitioned = (from: BreakerStateName, to: BreakerStateName) =>
      from === to
        ? Effect.void
        : Effect.all([
          Metric.set(stateGauge, STATE_VALUE[to]),
          // Refusing calls, by its own judgement or an operator's: the dependency serves nothing here.
          to === "open" || to === "forced_open" ? Metric.set(upGauge, 0) : Effect.void,
          Metric.increment(
            Metric.taggedWithLabels(breakerTransitionsTotal, [dependencyLabel, MetricLabel.make("from", from), MetricLabel.make("to", to)])
          ),
          (to === "open" || to === "forced_open" ? Effect.logWarning : Effect.logInfo)(
            `circuit breaker for ${options.dependency}: ${from} -> ${to}`
          ).pipe(Effect.annotateLogs({ dependency: options.dependency, from, to }))
        ], { discard: true })

    const openFor = (openMillis: number, now: number): State => ({ _tag: "open", until: now + openMillis, openMillis })

    const tripped = (consecutiveFailures: number, window: ReadonlyArray<Outcome>): boolean => {
      if (consecutiveFailures >= options.consecutiveFailures) return true
      if (window.length < options.minimumCalls) return false
      const failures = window.filter((outcome) => outcome.failed).length
      const slow = window.filter((outcome) => outcome.slow).length
      return failures / window.length >= options.failureRate || slow / window.length >= options.slowCallRate
    }

    const admit = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      modify((current): [readonly [Admission, BreakerStateName, BreakerStateName], State] => {
        switch (current._tag) {
          case "disabled":
            return [[{ _tag: "run", probe: false, tracked: false }, "disabled", "disabled"], current]
          case "forced_open":
            return [[{ _tag: "reject", retryAfterSeconds: Math.ceil(baseOpenMillis / 1000) }, "forced_open", "forced_open"], current]
          case "closed":
            return [[{ _tag: "run", probe: false, tracked: true }, "closed", "closed"], current]
          case "open":
            if (now < current.until) {
              return [[{ _tag: "reject", retryAfterSeconds: Math.ceil((current.until - now) / 1000) }, "open", "open"], current]
            }
            return [[{ _tag: "run", probe: true, tracked: true }, "open", "half_open"], {
              _tag: "half_open",
              probes: 1,
              openMillis: current.openMillis
            }]
          case "half_open":
            if (current.probes >= options.halfOpenMaxProbes) {
              return [[{ _tag: "reject", retryAfterSeconds: 1 }, "half_open", "half_open"], current]
            }
            return [[{ _tag: "run", probe: true, tracked: true }, "half_open", "half_open"], { ...current, probes: current.probes + 1 }]
        }
      })
    ).pipe(Effect.tap(([, from, to]) => transitioned(from, to)), Effect.map(([admission]) => admission))

    const record = (outcome: Outcome, probe: boolean) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        modify((current): [readonly [BreakerStateName, BreakerStateName], State] => {
          switch (current._tag) {
            case "closed": {
              const window = [...current.window, outcome].slice(-options.windowSize)
              const consecutiveFailures = outcome.failed ? current.consecutiveFailures + 1 : 0
              return tripped(consecutiveFailures, window)
                ? [["closed", "open"], openFor(baseOpenMillis, now)]
                : [["closed", "closed"], { _tag: "closed", consecutiveFailures, window }]
            }
            case "half_open": {
              if (!probe) return [["half_open", "half_open"], current]
              if (outcome.failed || outcome.slow) {
                return [["half_open", "open"], openFor(Math.min(current.openMillis * 2, maxOpenMillis), now)]
              }
              return [["half_open", "closed"], closedState]
            }
            // An operator changed the state while the call ran: the operator's word stands.
            default:
              return [[current._tag, current._tag], current]
          }
        })
      ).pipe(
        Effect.flatMap(([from, to]) =>
          Effect.zipRight(
            transitioned(from, to),
            // Up only when the breaker, having judged this call, lets calls through: a success it
            // did not count (a call begun before the breaker opened) or a slow probe that opened it
            // again says nothing for the calls that are being refused.
            Metric.set(upGauge, !outcome.failed && (to === "closed" || to === "disabled") ? 1 : 0)
          ))
      )

    /** A probe that ended without evidence (interrupted, a defect, a 404) frees its slot without judging the dependency. */
    const releaseProbe = modify((current) =>
      [undefined, current._tag === "half_open" ? { ...current, probes: Math.max(0, current.probes - 1) } : current])

    /** Whether an ended call says anything about the dependency, and what. */
    const outcomeOf = <A, E2>(exit: Exit.Exit<A, E2>, slow: boolean, overrun: Overrun | undefined): Outcome | undefined => {
      if (exit._tag === "Success") return { failed: false, slow }
      // The call timeout ran out while this process, not the dependency, held the call up.
      if (overrun !== undefined) return overrun.dependencySlow ? { failed: true, slow } : undefined
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      return failure !== undefined && options.isFailure(failure) ? { failed: true, slow } : undefined
    }

    const run = <A, E2, R>(effect: Effect.Effect<A, E2, R>, operation?: string): Effect.Effect<A, E | E2, R> =>
      Effect.flatMap(admit, (admission): Effect.Effect<A, E | E2, R> => {
        if (admission._tag === "reject") return Effect.fail(options.rejected(admission.retryAfterSeconds))
        let overrun: Overrun | undefined
        const attempt = discountingLoopDelay(effect, {
          timeout: options.callTimeout,
          loop,
          onTimeout: (cut) => {
            overrun = cut
            return options.timedOut(cut, operation)
          }
        })
        if (!admission.tracked) return attempt
        return Effect.flatMap(Clock.currentTimeMillis, (started) =>
          attempt.pipe(
            Effect.onExit((exit) =>
              Effect.flatMap(Clock.currentTimeMillis, (finished) => {
                const slow = finished - started - loop.heldUpBetween(started, finished) >= slowMillis
                const outcome = outcomeOf(exit, slow, overrun)
                if (outcome !== undefined) return record(outcome, admission.probe)
                return admission.probe ? releaseProbe : Effect.void
              })
            )
          ))
      })

    const status = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync((): BreakerStatus => {
        const current = state
        return {
          state: current._tag === "open" && now >= current.until ? "open" : current._tag,
          retryAfterSeconds: current._tag === "open" ? Math.max(0, Math.ceil((current.until - now) / 1000)) : 0,
          consecutiveFailures: current._tag === "closed" ? current.consecutiveFailures : 0,
          windowCalls: current._tag === "closed" ? current.window.length : 0,
          windowFailures: current._tag === "closed" ? current.window.filter((outcome) => outcome.failed).length : 0
        }
      }))

    /**
     * Whether a call made at `now` would be rejected at once (open and not yet due for a probe, or
     * forced open: `admit`'s rule for those states; a half-open breaker is left to `admit`). For callers with a fallback of their own, which can take it without building,
     * failing and catching a rejection (as `run` would) on every call while the dependency is down.
     */
    const rejectsAt = (now: number): boolean => state._tag === "forced_open" || (state._tag === "open" && now < state.until)

    /** Operators: force the breaker open, close it (reset), or disable it (calls pass untracked). */
    const force = (target: "open" | "close" | "disable") =>
      Effect.flatMap(
        modify((current): [readonly [BreakerStateName, BreakerStateName], State] => {
          const next: State = target === "open" ? { _tag: "forced_open" } : target === "disable" ? { _tag: "disabled" } : closedState
          return [[current._tag, next._tag], next]
        }),
        ([from, to]) => transitioned(from, to)
      )

    return { run, rejectsAt, status, force } as const
  })

export type CircuitBreaker<E> = Effect.Effect.Success<ReturnType<typeof make<E>>>
