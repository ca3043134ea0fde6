/** The server's scheduler keeps the default's fairness: a busy fiber yields, a forked one gets to run. */
import { expect, test } from "bun:test"
import { Effect, Fiber } from "effect"
import { serverScheduler } from "../src/Scheduler.js"

test("a fiber that never waits yields after its operation budget, so a forked fiber runs before it ends", async () => {
  const program = Effect.gen(function*() {
    let otherRan = false
    let firstSeenAt: number | undefined
    const other = yield* Effect.fork(Effect.sync(() => (otherRan = true)))
    // One operation an iteration (a step that has run, not a constant the generator unwraps itself):
    // ten budgets of 2048 without ever waiting.
    for (let i = 0; i < 20_000; i++) {
      yield* Effect.sync(() => {})
      if (otherRan && firstSeenAt === undefined) firstSeenAt = i
    }
    yield* Fiber.join(other)
    return firstSeenAt
  })
  const firstSeenAt = await Effect.runPromise(Effect.withScheduler(program, serverScheduler))
  // As with Effect's default scheduler: after about one budget (2030–2050 here), not at the end.
  expect(firstSeenAt).toBeDefined()
  expect(firstSeenAt!).toBeGreaterThan(1_000)
  expect(firstSeenAt!).toBeLessThanOrEqual(2_048)
})

test("tasks scheduled from many fibers all run, each once", async () => {
  const program = Effect.gen(function*() {
    let runs = 0
    const fibers = yield* Effect.forEach(Array.from({ length: 1_000 }), () => Effect.fork(Effect.zipRight(Effect.yieldNow(), Effect.sync(() => runs++))))
    yield* Fiber.joinAll(fibers)
    return runs
  })
  expect(await Effect.runPromise(Effect.withScheduler(program, serverScheduler))).toBe(1_000)
})
