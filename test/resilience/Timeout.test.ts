/** The per-call timeout that discounts this process's own loop delay, under `TestClock`. */
import { describe, expect, test } from "bun:test"
import { Effect, Exit, Fiber, Ref, TestClock, TestContext } from "effect"
import { discountingLoopDelay } from "../../layers/resilience/Timeout.js"

const notHeldUp = { heldUpBetween: () => 0 }

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Effect.provide(effect, TestContext.TestContext))

describe("discountingLoopDelay", () => {
  test("a call that finishes inside an uninterruptible region (a finalizer's drain) returns at once, not after the timeout", () =>
    run(Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.uninterruptible(
        discountingLoopDelay(Effect.succeed("written"), { timeout: "2 seconds", loop: notHeldUp, onTimeout: () => "timed out" as const })
      ))
      // The test clock never moves: were the race to wait for its losing timer, this would hang.
      expect(yield* Fiber.join(fiber)).toBe("written")
    })))

  test("a call that does not answer fails with its overrun once the dependency's time is up", () =>
    run(Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.either(
        discountingLoopDelay(Effect.never, { timeout: "100 millis", loop: notHeldUp, onTimeout: (overrun) => overrun })
      ))
      yield* TestClock.adjust("100 millis")
      const outcome = yield* Fiber.join(fiber)
      expect(outcome._tag).toBe("Left")
      if (outcome._tag === "Left") expect(outcome.left).toMatchObject({ timeoutMillis: 100, waitedMillis: 100, dependencySlow: true })
    })))
})

test("a call in an uninterruptible region whose fiber is interrupted meanwhile (a shutdown) still answers with its own result", () =>
  run(Effect.gen(function*() {
    const seen = yield* Ref.make<Exit.Exit<string, string> | undefined>(undefined)
    const fiber = yield* Effect.fork(Effect.uninterruptible(
      discountingLoopDelay(Effect.as(Effect.sleep("100 millis"), "written"), { timeout: "2 seconds", loop: notHeldUp, onTimeout: () => "timed out" }).pipe(
        Effect.exit,
        Effect.flatMap((exit) => Ref.set(seen, exit))
      )
    ))
    yield* TestClock.adjust("10 millis")
    const interruption = yield* Effect.fork(Fiber.interrupt(fiber))
    yield* TestClock.adjust("100 millis")
    yield* Fiber.join(interruption)
    expect(yield* Ref.get(seen)).toEqual(Exit.succeed("written"))
  })))
