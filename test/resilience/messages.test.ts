/** What the ledger and logs say of a dependency failure names its cause, never "null". */
import { describe, expect, test } from "bun:test"
import { Effect, Either, Fiber, Logger, LogLevel, TestClock, TestContext } from "effect"
import { defaultResilience, makeGuards } from "../../layers/database/Database.js"
import { DbOperational, serverMessageOf } from "../../src/errors.js"

const guards = makeGuards<DbOperational>({
  dependency: "database",
  resilience: defaultResilience,
  runsOnTheLoop: false,
  isUnavailable: (error): error is DbOperational => error instanceof DbOperational,
  unavailable: (fields) => new DbOperational(fields)
})

describe("server messages of dependency failures", () => {
  test("a call cut by its timeout says how long it waited and how much of it was this process's", () =>
    Effect.runPromise(Effect.gen(function*() {
      const { breaker } = yield* guards
      const fiber = yield* Effect.fork(Effect.either(breaker.run(Effect.never, "sessions.find")))
      yield* TestClock.adjust("2 seconds")
      const result = yield* Fiber.join(fiber)
      expect(Either.isLeft(result) && serverMessageOf(result.left)).toBe(
        "sessions.find failed (timeout): no reply within 2000 ms (waited 2000 ms, of which this process's event loop was held up 0 ms)"
      )
    }).pipe(Effect.provide(TestContext.TestContext), Logger.withMinimumLogLevel(LogLevel.None))))

  test("a rejection by an open breaker says so", () =>
    Effect.runPromise(Effect.gen(function*() {
      const { breaker } = yield* guards
      yield* breaker.force("open")
      const result = yield* Effect.either(breaker.run(Effect.void))
      expect(Either.isLeft(result) && serverMessageOf(result.left)).toBe(
        "database failed (breaker_open): the database circuit breaker is open: the call was refused without reaching the database"
      )
    }).pipe(Effect.provide(TestContext.TestContext), Logger.withMinimumLogLevel(LogLevel.None))))

  test("an error without a cause is described by its reason alone", () => {
    const error = new DbOperational({ operation: "health", reason: "unhealthy", transient: true, retryAfterSeconds: 1, cause: null })
    expect(serverMessageOf(error)).toBe("health failed (unhealthy)")
  })
})
