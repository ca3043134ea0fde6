/**
 * Supervised background loops (SPEC §5): a failure or a defect is logged at error with its cause,
 * counted, recorded, and the loop runs again after a backoff, under TestClock. Then the same through
 * real loops on a real SQLite file: the ledger's retention job and the memory expiry job, each given
 * a dependency that dies once, and the event bus probe, given a Redis-like cache whose publish dies
 * once (the other loops are wrapped by the same `Supervised.loop`).
 */
import { describe, expect, test } from "bun:test"
import { Context, Effect, Fiber, Layer, Logger, LogLevel, Metric, MetricLabel, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as CacheLayers from "../../layers/cache/Cache.js"
import * as Database from "../../layers/database/Database.js"
import { defaultBusHealth, EventBus } from "../../layers/events/EventBus.js"
import * as Supervised from "../../layers/resilience/Supervised.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { ErrorsRepo } from "../../services/ErrorsRepo.js"
import { MemoryStore } from "../../layers/memory/MemoryStore.js"
import { Memory } from "../../services/Memory.js"
import { backgroundRestartsTotal } from "../../src/telemetry/Metrics.js"

interface Logged {
  readonly level: LogLevel.LogLevel
  readonly message: unknown
  readonly annotations: Record<string, unknown>
}

/** Collects every log line, so that a test can see the level and the cause of what was said. */
const collecting = () => {
  const lines: Array<Logged> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    lines.push({ level: logLevel, message: Array.isArray(message) ? message[0] : message, annotations: Object.fromEntries(annotations) })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

const restartsOf = (loop: string) =>
  Metric.value(Metric.taggedWithLabels(backgroundRestartsTotal, [MetricLabel.make("loop", loop)])).pipe(Effect.map((state) => state.count))

/** Lets forked fibers run on the real scheduler without moving the test clock. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

describe("Supervised.loop", () => {
  test("a defect and a failure are each logged at error with the cause, counted, recorded, and the loop restarts after the backoff", () =>
    Effect.gen(function*() {
      const loop = `test-loop-${crypto.randomUUID()}`
      const recorded: Array<string> = []
      const failures = yield* Supervised.BackgroundFailures
      yield* failures.attach((name, cause) => Effect.sync(() => recorded.push(`${name}: ${String(cause)}`)))
      let runs = 0
      const body = Effect.suspend(() => {
        runs += 1
        if (runs === 1) return Effect.die(new Error("the first run dies"))
        if (runs === 2) return Effect.fail("the second run fails" as const)
        return Effect.never
      })
      const fiber = yield* Effect.fork(Supervised.loop(loop, { first: "100 millis", most: "30 seconds" })(body))
      yield* settle
      expect(runs).toBe(1)
      expect(recorded.length).toBe(1)
      expect(recorded[0]).toContain("the first run dies")
      // Not before the backoff...
      yield* TestClock.adjust("99 millis")
      yield* settle
      expect(runs).toBe(1)
      // ...and at it.
      yield* TestClock.adjust("1 millis")
      yield* settle
      expect(runs).toBe(2)
      expect(recorded[1]).toContain("the second run fails")
      // The backoff doubles: 200 ms for the next start.
      yield* TestClock.adjust("199 millis")
      yield* settle
      expect(runs).toBe(2)
      yield* TestClock.adjust("1 millis")
      yield* settle
      expect(runs).toBe(3)
      expect(yield* restartsOf(loop)).toBe(2)
      yield* Fiber.interrupt(fiber)
      // Interrupting (the scope closing) is the end of the loop, not a failure.
      expect(recorded.length).toBe(2)
      expect(yield* restartsOf(loop)).toBe(2)
    }).pipe(Effect.provide(Supervised.layer), Effect.scoped, Effect.provide(TestContext.TestContext), Effect.runPromise))

  test("the log line is at error and carries the loop and its cause", async () => {
    const { layer, lines } = collecting()
    await Effect.gen(function*() {
      const fiber = yield* Effect.fork(Supervised.loop("logged-loop")(Effect.die(new Error("kaboom"))))
      yield* settle
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(layer), Effect.provide(TestContext.TestContext), Effect.runPromise)
    const line = lines.find((entry) => String(entry.message).includes("background loop logged-loop failed"))
    expect(line?.level).toBe(LogLevel.Error)
    expect(line?.annotations["loop"]).toBe("logged-loop")
    expect(String(line?.annotations["cause"])).toContain("kaboom")
  })
})

describe("real loops recover from a defect", () => {
  test("the ledger's retention job: the defect is a ledger row (route job:ledger-retention) and the job runs again", async () => {
    const directory = mkdtempSync(join(tmpdir(), "bulwark-supervised-"))
    try {
      const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "ledger.db") }, sqliteBusyTimeoutMillis: 50 })
      const realRepo = ErrorsRepo.Default.pipe(Layer.provide(database))
      let purges = 0
      // The first purge dies (a bug, not a database error); the next ones are the real thing.
      const dyingOnce = Layer.effect(
        ErrorsRepo,
        Effect.map(ErrorsRepo, (repo) =>
          ErrorsRepo.make({
            ...repo,
            purgeOlderThan: (cutoff: string) =>
              Effect.suspend(() => {
                purges += 1
                return purges === 1 ? Effect.die(new Error("retention bug")) : repo.purgeOlderThan(cutoff)
              })
          }))
      ).pipe(Layer.provide(realRepo))
      const ledger = ErrorLedger.Default({ retentionDays: 30, purgeEvery: "1 day", linger: 0 }).pipe(
        Layer.provide(dyingOnce),
        Layer.provideMerge(Supervised.layer)
      )
      await Effect.gen(function*() {
        yield* settle
        expect(purges).toBe(1)
        const before = yield* restartsOf("ledger-retention")
        yield* TestClock.adjust("100 millis")
        yield* settle
        expect(purges).toBe(2)
        expect(before).toBeGreaterThanOrEqual(1)
        const repo = yield* ErrorsRepo
        const rows = yield* Effect.zipRight(settle, repo.list({ limit: 10 })).pipe(
          Effect.repeat({ until: (found) => found.some((row) => row.route === "job:ledger-retention"), times: 100 })
        )
        const row = rows.find((found) => found.route === "job:ledger-retention")
        expect(row).toMatchObject({ code: "INTERNAL_ERROR", severity: "critical", route: "job:ledger-retention" })
        expect(row?.message ?? "").toContain("background loop ledger-retention failed")
      }).pipe(Effect.provide(Layer.merge(ledger, realRepo)), Effect.scoped, Effect.provide(TestContext.TestContext), Effect.runPromise)
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("the memory expiry job: the defect is a ledger row (route job:memory-expiry) and the job runs again on its schedule", async () => {
    const directory = mkdtempSync(join(tmpdir(), "bulwark-supervised-"))
    try {
      const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "memory.db") }, sqliteBusyTimeoutMillis: 50 })
      const repo = ErrorsRepo.Default
      const ledger = ErrorLedger.Default({ retentionDays: 30, purgeEvery: "1 day", linger: 0 }).pipe(Layer.provide(repo))
      let purges = 0
      const dyingOnce = Layer.effect(
        MemoryStore,
        Effect.map(MemoryStore, (store) =>
          MemoryStore.of({
            ...store,
            purgeExpired: (now) =>
              Effect.suspend(() => {
                purges += 1
                return purges === 1 ? Effect.die(new Error("expiry bug")) : store.purgeExpired(now)
              })
          }))
      ).pipe(Layer.provide(MemoryStore.layer()))
      const memory = Memory.Default.pipe(Layer.provide(Layer.merge(dyingOnce, ledger)))
      await Effect.gen(function*() {
        yield* Memory
        yield* settle
        expect(purges).toBe(1)
        yield* TestClock.adjust("100 millis")
        yield* settle
        expect(purges).toBe(2)
        // Restarted, it keeps its own schedule: the next run is a minute later.
        yield* TestClock.adjust("1 minute")
        yield* settle
        expect(purges).toBe(3)
        const errors = yield* ErrorsRepo
        const rows = yield* Effect.zipRight(settle, errors.list({ limit: 10 })).pipe(
          Effect.repeat({ until: (found) => found.some((row) => row.route === "job:memory-expiry"), times: 100 })
        )
        expect(rows.find((row) => row.route === "job:memory-expiry")).toMatchObject({ code: "INTERNAL_ERROR", severity: "critical" })
        expect(yield* restartsOf("memory-expiry")).toBeGreaterThanOrEqual(1)
      }).pipe(
        Effect.provide(Layer.mergeAll(memory, ledger, repo).pipe(Layer.provideMerge(Supervised.layer), Layer.provideMerge(database))),
        Effect.scoped,
        Effect.provide(TestContext.TestContext),
        Effect.runPromise
      )
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("the event bus probe: a defect in publishing the probe is recorded and the probe runs again", () =>
    Effect.gen(function*() {
      let publishes = 0
      const recorded: Array<string> = []
      const failures = yield* Supervised.BackgroundFailures
      yield* failures.attach((loop, cause) => Effect.sync(() => recorded.push(`${loop}: ${String(cause)}`)))
      const real = Context.get(yield* Layer.build(CacheLayers.inProcess()), CacheLayers.Cache)
      // Probed like Redis; its first publish is a bug (a defect, which `catchAll` in the probe does not see).
      const dyingOnce = CacheLayers.Cache.of({
        ...real,
        kind: "redis",
        subscribe: () => Effect.void,
        publish: (channel, message) =>
          Effect.suspend(() => {
            publishes += 1
            return publishes === 1 ? Effect.die(new Error("publish bug")) : real.publish(channel, message)
          })
      })
      yield* Layer.build(EventBus.layerWith(defaultBusHealth).pipe(Layer.provide(Layer.succeed(CacheLayers.Cache, dyingOnce))))
      yield* settle
      expect(publishes).toBe(1)
      expect(recorded).toEqual([expect.stringContaining("event-bus-probe: ")])
      expect(recorded[0]).toContain("publish bug")
      yield* TestClock.adjust("100 millis")
      yield* settle
      expect(publishes).toBe(2)
      // Back on its own schedule: a probe every 250 ms.
      yield* TestClock.adjust("250 millis")
      yield* settle
      expect(publishes).toBe(3)
      expect(yield* restartsOf("event-bus-probe")).toBeGreaterThanOrEqual(1)
    }).pipe(Effect.provide(Supervised.layer), Effect.scoped, Effect.provide(TestContext.TestContext), Effect.runPromise))
})
