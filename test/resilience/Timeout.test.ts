/** The per-call timeout around an uninterruptible call (the ledger's writes are): it ends with the call. */
import { expect, test } from "bun:test"
import { Effect, Fiber, TestClock, TestContext } from "effect"
import { discountingLoopDelay } from "../../layers/resilience/Timeout.js"

test("an uninterruptible call that answers in 10 ms returns then, not when its 2 s timer would have fired", async () => {
  const finishedAt = await Effect.runPromise(
    Effect.gen(function*() {
      const call = discountingLoopDelay(Effect.uninterruptible(Effect.sleep("10 millis")), {
        timeout: "2 seconds",
        loop: { heldUpBetween: () => 0 },
        onTimeout: () => "timed out" as const
      })
      const fiber = yield* Effect.fork(Effect.uninterruptible(call))
      yield* TestClock.adjust("10 millis")
      // Had the race waited for its timer, the call would still be running here.
      const done = yield* Fiber.poll(yield* Effect.succeed(fiber))
      yield* Fiber.join(fiber)
      return { done: done._tag === "Some", at: yield* TestClock.currentTimeMillis }
    }).pipe(Effect.provide(TestContext.TestContext))
  )
  expect(finishedAt).toEqual({ done: true, at: 10 })
})
