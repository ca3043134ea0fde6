/** An idempotency key lasts 24 hours, by the Clock. */
import { expect, test } from "bun:test"
import { Effect, Either, Layer, Ref, Schema, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Database from "../../layers/database/Database.js"
import { Idempotency } from "../../services/Idempotency.js"

test("within 24 h a different body is refused; after 24 h the key is free again", async () => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-idempotency-"))
  const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "db.sqlite") }, sqliteBusyTimeoutMillis: 25 })
  try {
    await Effect.runPromise(
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.parse("2026-11-23T00:00:00Z"))
        const idempotency = yield* Idempotency
        const writes = yield* Ref.make(0)
        const run = (body: object) =>
          idempotency.run({
            scope: "tenant:t",
            key: "k",
            operation: "test",
            body,
            result: Schema.Number,
            write: Ref.updateAndGet(writes, (n) => n + 1)
          })
        expect(yield* run({ a: 1 })).toBe(1)
        expect(yield* run({ a: 1 })).toBe(1)
        yield* TestClock.adjust("23 hours")
        const refused = yield* Effect.either(run({ a: 2 }))
        expect(Either.isLeft(refused) && refused.left._tag === "Conflict" && refused.left.code).toBe("IDEMPOTENCY_KEY_REUSED")
        yield* TestClock.adjust("2 hours")
        expect(yield* run({ a: 2 })).toBe(2)
        expect(yield* Ref.get(writes)).toBe(2)
      }).pipe(Effect.provide(Idempotency.Default.pipe(Layer.provide(database))), Effect.provide(TestContext.TestContext))
    )
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
})
