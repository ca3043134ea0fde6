/** The per-call timeout lets a finished call go at once, also when the call runs uninterruptibly. */
import { describe, expect, test } from "bun:test"
import { Effect, Fiber, Option, TestContext } from "effect"
import { discountingLoopDelay } from "../../layers/resilience/Timeout.js"

const neverHeldUp = { heldUpBetween: () => 0 }

describe("discountingLoopDelay", () => {
  test("an uninterruptible call that succeeds is not held until its timer runs out (the ledger's batch write)", async () => {
    const outcome = await Effect.gen(function*() {
      const call = discountingLoopDelay(Effect.succeed("written"), { timeout: "2 seconds", loop: neverHeldUp, onTimeout: () => "timed out" as const })
      const fiber = yield* Effect.forkDaemon(Effect.uninterruptible(call))
      // Under TestClock no time passes: only a timer that is interrupted lets the fiber finish.
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      return yield* Fiber.poll(fiber)
    }).pipe(Effect.provide(TestContext.TestContext), Effect.runPromise)
    expect(Option.map(outcome, (exit) => exit._tag === "Success" && exit.value)).toEqual(Option.some("written"))
  })
})
