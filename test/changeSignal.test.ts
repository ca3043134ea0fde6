/**
 * The polled change signal on a real database (a SQLite file migrated as the server migrates it),
 * time driven by `TestClock`: a key change committed by another connection moves the mark at the
 * next read, and while the generation cannot be read the mark is withheld, so nothing kept is trusted.
 */
import { describe, expect, test } from "bun:test"
import { Database as BunDatabase } from "bun:sqlite"
import { Clock, Effect, Layer, Metric, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { polled } from "../layers/database/ChangeSignal.js"
import * as Migrations from "../layers/database/Migrations.js"
import * as Sqlite from "../layers/database/sqlite/Sqlite.js"
import { keptKeysTrusted } from "../src/telemetry/Metrics.js"

const withMigratedFile = (body: (filename: string) => Effect.Effect<void, unknown, never>) => async () => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-signal-"))
  const filename = join(directory, "bulwark.db")
  try {
    await Effect.runPromise(body(filename))
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
}

/** Lets the signal's own fiber run its read after the clock moved. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const advance = (millis: number) => Effect.zipRight(TestClock.adjust(millis), settle)

describe("the polled change signal", () => {
  test("a key change committed elsewhere moves the mark at the next read; a lost read withholds it until one succeeds", withMigratedFile((filename) =>
    Effect.gen(function*() {
      const signal = yield* polled({ interval: "250 millis", trustFor: "750 millis" })
      const other = new BunDatabase(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      const keys = Effect.map(Clock.currentTimeMillis, (now) => signal.keys(now))
      const anything = Effect.map(Clock.currentTimeMillis, (now) => signal.anything(now))

      const trusted = Effect.map(Metric.value(keptKeysTrusted), (state) => state.value)

      yield* settle
      const first = yield* keys
      expect(first).toBe(0)
      expect(yield* trusted).toBe(1)
      // It vouches for keys only.
      expect(yield* anything).toBeUndefined()

      other.run("UPDATE change_marks SET generation = generation + 1 WHERE name = 'api_keys'")
      expect(yield* keys).toBe(first)
      yield* advance(250)
      expect(yield* keys).toBe(1)

      // The generation cannot be read (its table is gone): trusted until 750 ms after the last
      // read that succeeded was sent, then withheld.
      other.run("ALTER TABLE change_marks RENAME TO change_marks_away")
      yield* advance(250)
      expect(yield* keys).toBe(1)
      yield* advance(250)
      expect(yield* keys).toBe(1)
      yield* advance(250)
      expect(yield* keys).toBeUndefined()
      yield* advance(1000)
      expect(yield* keys).toBeUndefined()
      expect(yield* trusted).toBe(0)

      // Readable again, with a change made meanwhile: the next read gives the new mark.
      other.run("ALTER TABLE change_marks_away RENAME TO change_marks")
      other.run("UPDATE change_marks SET generation = generation + 1 WHERE name = 'api_keys'")
      yield* advance(250)
      expect(yield* keys).toBe(2)
      expect(yield* trusted).toBe(1)

      // The signal's own bump, as a revoking transaction runs it.
      yield* signal.keysChanged
      yield* advance(250)
      expect(yield* keys).toBe(3)
    }).pipe(
      Effect.provide(Layer.effectDiscard(Migrations.run).pipe(Layer.provideMerge(Sqlite.layer({ filename, busyTimeoutMillis: 25 })))),
      Effect.scoped,
      Effect.provide(TestContext.TestContext)
    )))
})
