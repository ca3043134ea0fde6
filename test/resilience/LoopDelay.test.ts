/** The event-loop monitor on the real loop: it sees a block of synchronous work, and only that. */
import { describe, expect, test } from "bun:test"
import { Effect, Metric } from "effect"
import * as LoopDelay from "../../layers/resilience/LoopDelay.js"
import { eventLoopDelay } from "../../src/telemetry/Metrics.js"

const blockFor = (millis: number) => {
  const until = Date.now() + millis
  while (Date.now() < until) {
    // synchronous work: nothing else on this loop runs meanwhile
  }
}

describe("LoopDelay.monitor", () => {
  test("measures a block of synchronous work as held-up time, including one still in progress", () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const monitor = yield* LoopDelay.monitor()
      yield* Effect.promise(() => Bun.sleep(30))
      const before = Date.now()
      blockFor(150)
      // Asked before the monitor's own tick has run: the hold-up in progress counts.
      const inProgress = monitor.heldUpBetween(before, Date.now())
      yield* Effect.promise(() => Bun.sleep(30))
      const after = monitor.heldUpBetween(before, Date.now())
      expect(inProgress).toBeGreaterThanOrEqual(120)
      expect(after).toBeGreaterThanOrEqual(120)
      // Nothing outside the window is counted in it.
      expect(monitor.heldUpBetween(before - 1_000, before - 500)).toBe(0)
      // And the metric saw a tick at least 100 ms late.
      const histogram = yield* Metric.value(eventLoopDelay)
      const upTo100ms = histogram.buckets.find(([bound]) => bound === 0.1)![1]
      expect(histogram.count).toBeGreaterThan(upTo100ms)
      expect(histogram.max).toBeGreaterThanOrEqual(0.12)
    }))))

  test("hold-ups older than the history are forgotten", () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const monitor = yield* LoopDelay.monitor({ intervalMillis: 5, historyMillis: 100 })
      yield* Effect.promise(() => Bun.sleep(20))
      const before = Date.now()
      blockFor(60)
      const after = Date.now()
      yield* Effect.promise(() => Bun.sleep(20))
      expect(monitor.heldUpBetween(before, after)).toBeGreaterThanOrEqual(40)
      yield* Effect.promise(() => Bun.sleep(300))
      expect(monitor.heldUpBetween(before, after)).toBe(0)
    }))))

  test("an idle loop is not held up", () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const monitor = yield* LoopDelay.monitor()
      const before = Date.now()
      yield* Effect.promise(() => Bun.sleep(300))
      // Generous: a busy machine may hold any process up a little; a monitor that counted the idle wait would report all 300 ms.
      expect(monitor.heldUpBetween(before, Date.now())).toBeLessThan(150)
    }))))

  test("without a monitor nothing is subtracted", () =>
    Effect.runPromise(Effect.map(LoopDelay.LoopDelay, (unmeasured) => expect(unmeasured.heldUpBetween(0, 10_000)).toBe(0))))
})
