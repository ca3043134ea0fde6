/** Work after a burst, under TestClock: once per burst of at least `threshold` events, after a quiet time that every event postpones. */
import { expect, test } from "bun:test"
import { Effect, TestClock, TestContext } from "effect"
import * as AfterBurst from "../../layers/resilience/AfterBurst.js"

const withCollector = (program: (burst: AfterBurst.AfterBurst, collections: () => number) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    let collections = 0
    const burst = yield* AfterBurst.make({ threshold: 3, quiet: "1 second", run: Effect.sync(() => void collections++) })
    yield* program(burst, () => collections)
  }).pipe(Effect.scoped, Effect.provide(TestContext.TestContext), Effect.runPromise)

const recordTimes = (burst: AfterBurst.AfterBurst, times: number) => Effect.sync(() => {
  for (let i = 0; i < times; i++) burst.record()
})

test("fewer events than the threshold never run it", () =>
  withCollector((burst, collections) =>
    Effect.gen(function*() {
      yield* recordTimes(burst, 2)
      yield* TestClock.adjust("1 minute")
      expect(collections()).toBe(0)
    })))

test("runs once, a quiet second after the last event of a burst; each event meanwhile postpones it", () =>
  withCollector((burst, collections) =>
    Effect.gen(function*() {
      yield* recordTimes(burst, 3)
      yield* TestClock.adjust("600 millis")
      expect(collections()).toBe(0)
      // Still bursting: the second counts from here.
      yield* recordTimes(burst, 5)
      yield* TestClock.adjust("600 millis")
      expect(collections()).toBe(0)
      yield* TestClock.adjust("400 millis")
      expect(collections()).toBe(1)
      yield* TestClock.adjust("1 minute")
      expect(collections()).toBe(1)
    })))

test("the count starts again once it ran: the next run needs another threshold of events", () =>
  withCollector((burst, collections) =>
    Effect.gen(function*() {
      yield* recordTimes(burst, 3)
      yield* TestClock.adjust("1 second")
      expect(collections()).toBe(1)
      yield* recordTimes(burst, 2)
      yield* TestClock.adjust("10 seconds")
      expect(collections()).toBe(1)
      yield* recordTimes(burst, 1)
      yield* TestClock.adjust("999 millis")
      expect(collections()).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(collections()).toBe(2)
    })))

test("one still waiting when its owner's scope closes never runs (real clock)", async () => {
  let collections = 0
  await Effect.gen(function*() {
    const burst = yield* AfterBurst.make({ threshold: 1, quiet: "20 millis", run: Effect.sync(() => void collections++) })
    burst.record()
  }).pipe(Effect.scoped, Effect.runPromise)
  await Bun.sleep(100)
  expect(collections).toBe(0)
})

test("with the real clock it runs once the quiet time has passed", async () => {
  let collections = 0
  await Effect.gen(function*() {
    const burst = yield* AfterBurst.make({ threshold: 1, quiet: "20 millis", run: Effect.sync(() => void collections++) })
    burst.record()
    yield* Effect.promise(() => Bun.sleep(100))
  }).pipe(Effect.scoped, Effect.runPromise)
  expect(collections).toBe(1)
})
