/** The per-call timeout inside an uninterruptible region (the ledger's batch, a commit). */
import { expect, test } from "bun:test"
import { Effect, Fiber, TestClock, TestContext } from "effect"
import type { LoopDelayShape } from "../../layers/resilience/LoopDelay.js"
import { discountingLoopDelay } from "../../layers/resilience/Timeout.js"

const neverHeldUp: LoopDelayShape = { heldUpBetween: () => 0 }

test("an uninterruptible call ends when its work ends, not when its timeout would have run out", () =>
  Effect.gen(function*() {
    const call = discountingLoopDelay(Effect.as(Effect.sleep("10 millis"), "done"), {
      timeout: "2 seconds",
      loop: neverHeldUp,
      onTimeout: () => "timed out" as const
    })
    const fiber = yield* Effect.fork(Effect.uninterruptible(call))
    yield* TestClock.adjust("10 millis")
    // Had the race waited for its losing timer, the call would still be running here.
    const exit = yield* Fiber.poll(fiber)
    expect(exit._tag).toBe("Some")
    expect(yield* Fiber.join(fiber)).toBe("done")
  }).pipe(Effect.provide(TestContext.TestContext), Effect.runPromise))
