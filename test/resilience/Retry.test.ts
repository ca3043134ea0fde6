/** Retries and the retry budget, and the bulkhead, driven by TestClock. */
import { describe, expect, test } from "bun:test"
import { Data, Deferred, Effect, Either, Fiber, Ref, TestClock, TestContext } from "effect"
import * as Bulkhead from "../../layers/resilience/Bulkhead.js"
import { makeBudget, retrying } from "../../layers/resilience/Retry.js"

class Busy extends Data.TaggedError("Busy")<{}> {}
class Broken extends Data.TaggedError("Broken")<{}> {}
class Full extends Data.TaggedError("Full")<{}> {}

/** The error of a failed call, or undefined. */
const leftOf = <A, E>(result: Either.Either<A, E>): E | undefined => (Either.isLeft(result) ? result.left : undefined)

const run = <A, E>(program: Effect.Effect<A, E>) => Effect.runPromise(program.pipe(Effect.provide(TestContext.TestContext)))

const policy = (budget: Effect.Effect.Success<ReturnType<typeof makeBudget>>) =>
  retrying({
    dependency: "test",
    isTransient: (error) => error instanceof Busy,
    baseDelay: "20 millis",
    maxRetries: 3,
    maxElapsed: "1 second",
    budget
  })

describe("retry", () => {
  test("a transient failure is retried and then succeeds", () =>
    run(Effect.gen(function*() {
      // A roomy budget: this test is about the schedule, not the budget.
      const budget = yield* makeBudget({ ratio: 10, window: "10 seconds" })
      const attempts = yield* Ref.make(0)
      const flaky = Effect.flatMap(Ref.updateAndGet(attempts, (n) => n + 1), (n) => (n < 3 ? Effect.fail(new Busy()) : Effect.succeed(n)))
      const fiber = yield* Effect.fork(policy(budget)(flaky))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe(3)
    })))

  test("at low traffic the floor still allows a lone call its retries", () =>
    run(Effect.gen(function*() {
      const budget = yield* makeBudget({ ratio: 0.2, window: "10 seconds", minRetries: 3 })
      const attempts = yield* Ref.make(0)
      const fiber = yield* Effect.fork(Effect.either(policy(budget)(Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.fail(new Busy())))))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(attempts)).toBe(4)
    })))

  test("a permanent failure is never retried", () =>
    run(Effect.gen(function*() {
      const budget = yield* makeBudget({ ratio: 1, window: "10 seconds" })
      const attempts = yield* Ref.make(0)
      const result = yield* Effect.either(policy(budget)(Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.fail(new Broken()))))
      expect(leftOf(result)?._tag).toBe("Broken")
      expect(yield* Ref.get(attempts)).toBe(1)
    })))

  test("with the dependency dead, retries never exceed 20% of calls over the window", () =>
    run(Effect.gen(function*() {
      const budget = yield* makeBudget({ ratio: 0.2, window: "10 seconds", minRetries: 3 })
      const attempts = yield* Ref.make(0)
      const dead = Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.fail(new Busy()))
      // 400 calls at 50 per second: several windows' worth of traffic at a dead dependency.
      const calls = 400
      const fibers = []
      for (let i = 0; i < calls; i++) {
        fibers.push(yield* Effect.fork(Effect.either(policy(budget)(dead))))
        yield* TestClock.adjust("20 millis")
      }
      yield* TestClock.adjust("10 seconds")
      yield* Effect.forEach(fibers, Fiber.join)
      const total = yield* Ref.get(attempts)
      // Some retries happened, and they added at most 20% to the calls the dependency saw.
      expect(total - calls).toBeGreaterThan(0)
      expect((total - calls) / calls).toBeLessThanOrEqual(0.2)
    })))
})

describe("bulkhead", () => {
  test("past the concurrency and queue bounds a call fails at once", () =>
    run(Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ maxConcurrent: 2, maxQueued: 1, full: () => new Full() })
      const gate = yield* Deferred.make<void>()
      const held = yield* Effect.forEach([1, 2, 3], () => Effect.fork(bulkhead.run(Deferred.await(gate))))
      yield* Effect.yieldNow()
      expect(yield* bulkhead.inFlight).toBe(3)
      const refused = yield* Effect.either(bulkhead.run(Effect.succeed("x")))
      expect(leftOf(refused)?._tag).toBe("Full")
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(held, Fiber.join)
      expect(yield* bulkhead.inFlight).toBe(0)
      expect(yield* bulkhead.run(Effect.succeed("after"))).toBe("after")
    })))
})
