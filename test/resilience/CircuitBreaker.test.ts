/** The circuit breaker's rules, each driven by TestClock (no test sleeps). */
import { describe, expect, test } from "bun:test"
import { Data, Deferred, Effect, Either, Fiber, Metric, MetricLabel, TestClock, TestContext } from "effect"
import { dependencyUp } from "../../src/telemetry/Metrics.js"
import * as CircuitBreaker from "../../layers/resilience/CircuitBreaker.js"
import { LoopDelay, type LoopDelayShape } from "../../layers/resilience/LoopDelay.js"

class Unwell extends Data.TaggedError("Unwell")<{}> {}
class Missing extends Data.TaggedError("Missing")<{}> {}
class Rejected extends Data.TaggedError("Rejected")<{ readonly retryAfterSeconds: number }> {}
class TimedOut extends Data.TaggedError("TimedOut")<{}> {}
type Failure = Unwell | Missing | Rejected | TimedOut

const options = (overrides: Partial<CircuitBreaker.BreakerOptions<Failure>> = {}): CircuitBreaker.BreakerOptions<Failure> => ({
  dependency: "test",
  consecutiveFailures: 3,
  failureRate: 0.5,
  slowCallRate: 0.5,
  slowCallDuration: "1 second",
  windowSize: 10,
  minimumCalls: 6,
  openDuration: "5 seconds",
  maxOpenDuration: "40 seconds",
  halfOpenMaxProbes: 1,
  callTimeout: "3 seconds",
  isFailure: (error) => !(error instanceof Missing),
  rejected: (retryAfterSeconds) => new Rejected({ retryAfterSeconds }),
  timedOut: () => new TimedOut(),
  ...overrides
})

/** The error of a failed call, or undefined. */
const leftOf = <A, E>(result: Either.Either<A, E>): E | undefined => (Either.isLeft(result) ? result.left : undefined)

const run = <A, E>(program: Effect.Effect<A, E>) => Effect.runPromise(program.pipe(Effect.provide(TestContext.TestContext)))
const failing = Effect.fail(new Unwell())
const ok = Effect.succeed("ok")

describe("CircuitBreaker", () => {
  test("trips after N consecutive failures and then rejects at once with the time left open", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).state).toBe("open")
      let called = false
      const rejected = yield* Effect.either(breaker.run(Effect.sync(() => (called = true))))
      expect(called).toBe(false)
      expect(leftOf(rejected)).toMatchObject({ _tag: "Rejected", retryAfterSeconds: 5 })
      yield* TestClock.adjust("2 seconds")
      expect(leftOf(yield* Effect.either(breaker.run(ok)))).toMatchObject({ retryAfterSeconds: 3 })
    })))

  test("trips on the failure rate over the window once the minimum calls are reached", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options({ consecutiveFailures: 100 }))
      // Alternating: never 3 in a row, but 50% failures.
      for (let i = 0; i < 5; i++) yield* Effect.either(breaker.run(i % 2 === 0 ? failing : ok))
      expect((yield* breaker.status).state).toBe("closed")
      yield* Effect.either(breaker.run(ok))
      yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).state).toBe("open")
    })))

  test("trips on the slow-call rate", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      const slow = Effect.as(Effect.sleep("1500 millis"), "late")
      for (let i = 0; i < 6; i++) {
        const fiber = yield* Effect.fork(breaker.run(i < 3 ? slow : ok))
        yield* TestClock.adjust("1500 millis")
        yield* Fiber.join(fiber)
      }
      expect((yield* breaker.status).state).toBe("open")
    })))

  test("failures that do not mean the dependency is unwell never move it", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 20; i++) yield* Effect.either(breaker.run(Effect.fail(new Missing())))
      expect((yield* breaker.status).state).toBe("closed")
    })))

  test("half-open admits a bounded number of probes, rejects the rest at once, and closes on success", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      yield* TestClock.adjust("5 seconds")
      const release = yield* Deferred.make<void>()
      const probe = yield* Effect.fork(breaker.run(Effect.as(Deferred.await(release), "probed")))
      yield* Effect.yieldNow()
      expect((yield* breaker.status).state).toBe("half_open")
      expect(leftOf(yield* Effect.either(breaker.run(ok)))?._tag).toBe("Rejected")
      yield* Deferred.succeed(release, undefined)
      expect(yield* Fiber.join(probe)).toBe("probed")
      expect((yield* breaker.status).state).toBe("closed")
    })))

  test("a hanging probe is cut by the call timeout, counts as a failure, and the open time backs off", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(Effect.either(breaker.run(Effect.never)))
      yield* TestClock.adjust("3 seconds")
      expect(leftOf(yield* Fiber.join(probe))?._tag).toBe("TimedOut")
      const status = yield* breaker.status
      expect(status.state).toBe("open")
      expect(status.retryAfterSeconds).toBe(10)
      // Fails again: 20 s, then capped at 40 s.
      yield* TestClock.adjust("10 seconds")
      yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).retryAfterSeconds).toBe(20)
      yield* TestClock.adjust("20 seconds")
      yield* Effect.either(breaker.run(failing))
      yield* TestClock.adjust("40 seconds")
      yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).retryAfterSeconds).toBe(40)
    })))

  test("the dependency's up gauge is 1 only while the breaker lets calls through: a slow probe's success, a late success or an operator's forced open keeps it 0", () =>
    run(Effect.gen(function*() {
      // A dependency name of this test's own: metrics are the process's.
      const breaker = yield* CircuitBreaker.make(options({ dependency: "gauge-test" }))
      const up = Metric.taggedWithLabels(dependencyUp, [MetricLabel.make("dependency", "gauge-test")])
      const gauge = Effect.map(Metric.value(up), (state) => state.value)
      yield* breaker.run(ok)
      expect(yield* gauge).toBe(1)
      // A call begun while closed, still running when the breaker opens.
      const release = yield* Deferred.make<void>()
      const late = yield* Effect.fork(breaker.run(Effect.as(Deferred.await(release), "late")))
      yield* Effect.yieldNow()
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      expect(yield* gauge).toBe(0)
      yield* Deferred.succeed(release, undefined)
      expect(yield* Fiber.join(late)).toBe("late")
      expect((yield* breaker.status).state).toBe("open")
      expect(yield* gauge).toBe(0)
      // A probe that answers, but slowly: the breaker opens again, and the gauge stays 0.
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(breaker.run(Effect.as(Effect.sleep("1500 millis"), "slow")))
      yield* TestClock.adjust("1500 millis")
      expect(yield* Fiber.join(probe)).toBe("slow")
      expect((yield* breaker.status).state).toBe("open")
      expect(yield* gauge).toBe(0)
      // A quick probe closes it: up.
      yield* TestClock.adjust("10 seconds")
      yield* breaker.run(ok)
      expect((yield* breaker.status).state).toBe("closed")
      expect(yield* gauge).toBe(1)
      // Forced open by an operator: calls are refused, so nothing is served.
      yield* breaker.force("open")
      expect(yield* gauge).toBe(0)
    })))

  test("operators can force it open, disable it, and close it", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      yield* breaker.force("open")
      expect(leftOf(yield* Effect.either(breaker.run(ok)))?._tag).toBe("Rejected")
      yield* TestClock.adjust("1 hour")
      expect((yield* breaker.status).state).toBe("forced_open")
      yield* breaker.force("disable")
      for (let i = 0; i < 10; i++) yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).state).toBe("disabled")
      yield* breaker.force("close")
      expect(yield* breaker.run(ok)).toBe("ok")
      expect((yield* breaker.status).state).toBe("closed")
    })))

  test("rejectsAt answers, without a call, whether a call would be rejected at once", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      const now = () => Effect.map(TestClock.currentTimeMillis, (millis) => breaker.rejectsAt(millis))
      expect(yield* now()).toBe(false)
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      expect(yield* now()).toBe(true)
      // Due for a probe: a call would be admitted, so the caller must ask.
      yield* TestClock.adjust("5 seconds")
      expect(yield* now()).toBe(false)
      yield* breaker.force("open")
      expect(yield* now()).toBe(true)
      yield* breaker.force("disable")
      expect(yield* now()).toBe(false)
      yield* breaker.force("close")
      expect(yield* now()).toBe(false)
    })))

  test("a defect is no evidence: it neither breaks a run of failures nor closes a half-open breaker", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      const defect = Effect.die(new Error("a bug of ours"))
      yield* Effect.either(breaker.run(failing))
      yield* Effect.either(breaker.run(failing))
      yield* Effect.exit(breaker.run(defect))
      expect((yield* breaker.status).consecutiveFailures).toBe(2)
      yield* Effect.either(breaker.run(failing))
      expect((yield* breaker.status).state).toBe("open")
      yield* TestClock.adjust("5 seconds")
      const died = yield* Effect.exit(breaker.run(defect))
      expect(died._tag === "Failure" && died.cause._tag === "Die").toBe(true)
      expect((yield* breaker.status).state).toBe("half_open")
      // Its probe slot is free again: the next call probes, and a failure re-opens with backoff.
      yield* Effect.either(breaker.run(failing))
      expect(yield* breaker.status).toMatchObject({ state: "open", retryAfterSeconds: 10 })
    })))

  test("an error that does not mean the dependency is unwell does not close a half-open breaker", () =>
    run(Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      yield* TestClock.adjust("5 seconds")
      expect(leftOf(yield* Effect.either(breaker.run(Effect.fail(new Missing()))))?._tag).toBe("Missing")
      expect((yield* breaker.status).state).toBe("half_open")
      expect(yield* breaker.run(ok)).toBe("ok")
      expect((yield* breaker.status).state).toBe("closed")
    })))
})

describe("CircuitBreaker with this process's loop held up", () => {
  /** A loop that was held up for `share` of every window asked about. */
  const heldUp = (share: number): LoopDelayShape => ({ heldUpBetween: (from, to) => Math.round((to - from) * share) })
  const withLoop = <A, E>(loop: LoopDelayShape, program: Effect.Effect<A, E>) =>
    run(program.pipe(Effect.provideService(LoopDelay, loop)))

  test("a call slowed by this process, not by the dependency, is given the time back and succeeds", () =>
    withLoop(heldUp(0.5), Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      // 4 s of waiting, half of it this process's: 2 s of the dependency's, under the 3 s timeout.
      const fiber = yield* Effect.fork(breaker.run(Effect.as(Effect.sleep("4 seconds"), "late but fine")))
      yield* TestClock.adjust("4 seconds")
      expect(yield* Fiber.join(fiber)).toBe("late but fine")
      expect(yield* breaker.status).toMatchObject({ state: "closed", windowCalls: 1, windowFailures: 0 })
    })))

  test("the dependency's own share still times out: a silent dependency is cut once its share reaches the timeout", () =>
    withLoop(heldUp(0.5), Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      const fiber = yield* Effect.fork(Effect.either(breaker.run(Effect.never)))
      yield* TestClock.adjust("5 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(leftOf(yield* Fiber.join(fiber))?._tag).toBe("TimedOut")
      expect((yield* breaker.status).consecutiveFailures).toBe(1)
    })))

  test("a loop that stays busy ends the wait at ten times the timeout, and the dependency is not blamed", () =>
    withLoop(heldUp(1), Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      for (let i = 0; i < 5; i++) {
        const fiber = yield* Effect.fork(Effect.either(breaker.run(Effect.never)))
        yield* TestClock.adjust("29 seconds")
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 second")
        expect(leftOf(yield* Fiber.join(fiber))?._tag).toBe("TimedOut")
      }
      expect(yield* breaker.status).toMatchObject({ state: "closed", consecutiveFailures: 0, windowCalls: 0 })
    })))

  test("the slow-call rule counts only the dependency's share of a call", () =>
    withLoop(heldUp(0.5), Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options())
      // 1.5 s each (slow by the 1 s rule), of which 0.75 s is the dependency's: not slow.
      for (let i = 0; i < 8; i++) {
        const fiber = yield* Effect.fork(breaker.run(Effect.as(Effect.sleep("1500 millis"), "done")))
        yield* TestClock.adjust("1500 millis")
        yield* Fiber.join(fiber)
      }
      expect(yield* breaker.status).toMatchObject({ state: "closed", windowCalls: 8, windowFailures: 0 })
    })))

  test("a dependency that runs on the loop (SQLite) is not given the loop's time: its own statements are that time", () =>
    withLoop(heldUp(0.5), Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make(options({ runsOnTheLoop: true }))
      for (let i = 0; i < 6; i++) {
        const fiber = yield* Effect.fork(breaker.run(Effect.as(Effect.sleep("1500 millis"), "done")))
        yield* TestClock.adjust("1500 millis")
        yield* Fiber.join(fiber)
      }
      expect((yield* breaker.status).state).toBe("open")
    })))
})
