/** Memory TTLs under TestClock: an expired key is gone at once, and the purge job deletes it later. */
import { expect, test } from "bun:test"
import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Database from "../../layers/database/Database.js"
import { MemoryStore } from "../../layers/memory/MemoryStore.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { ErrorsRepo } from "../../services/ErrorsRepo.js"
import { SESSION, seedSession, TENANT } from "../support/seed.js"
import { Memory } from "../../services/Memory.js"


const withMemory = <A, E>(program: Effect.Effect<A, E, Memory | SqlClient.SqlClient>) => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-memory-"))
  const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "memory.db") }, sqliteBusyTimeoutMillis: 50 })
  const ledger = ErrorLedger.Default({ retentionDays: 30, purgeEvery: "1 day", linger: 0 }).pipe(Layer.provide(ErrorsRepo.Default))
  const memory = Memory.Default.pipe(Layer.provide(Layer.merge(MemoryStore.layer(), ledger)))
  return Effect.runPromise(
    program.pipe(Effect.provide(memory.pipe(Layer.provideMerge(database))), Effect.provide(TestContext.TestContext), Effect.scoped)
  ).finally(() => rmSync(directory, { recursive: true, force: true }))
}

/** Rows in the table, expired or not: what the purge job has not deleted yet. */
const storedKeys = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ key: string }>`SELECT key FROM memory ORDER BY key`).pipe(
  Effect.map((rows) => rows.map((row) => row.key))
)

/** Lets the purge fiber, woken by the clock, finish its write (on the real scheduler). */
const settled = (expected: ReadonlyArray<string>) =>
  Effect.zipRight(Effect.yieldNow(), storedKeys).pipe(
    Effect.filterOrFail((keys) => JSON.stringify(keys) === JSON.stringify(expected), (keys) => `stored keys are ${keys.join(",")}`),
    Effect.retry({ times: 1000 })
  )

test("a key is 404 MEMORY_KEY_NOT_FOUND from the instant it expires, and the job purges it on its next run", () =>
  withMemory(
    Effect.gen(function*() {
      yield* seedSession
      const memory = yield* Memory
      yield* memory.put(TENANT, SESSION, "short", { value: "10 s" , ttl_seconds: 10 })
      yield* memory.put(TENANT, SESSION, "long", { value: "100 s", ttl_seconds: 100 })
      yield* memory.put(TENANT, SESSION, "forever", { value: "no ttl" })

      yield* TestClock.adjust("9999 millis")
      expect((yield* memory.get(TENANT, SESSION, "short")).value).toBe("10 s")
      yield* TestClock.adjust("1 millis")
      const expired = yield* Effect.either(memory.get(TENANT, SESSION, "short"))
      expect(Either.isLeft(expired) && expired.left._tag === "NotFound" && expired.left.code).toBe("MEMORY_KEY_NOT_FOUND")
      expect((yield* memory.list(TENANT, SESSION)).data.map((entry) => entry.key)).toEqual(["forever", "long"])
      const deleteExpired = yield* Effect.either(memory.remove(TENANT, SESSION, "short"))
      expect(Either.isLeft(deleteExpired) && deleteExpired.left._tag === "NotFound" && deleteExpired.left.code).toBe("MEMORY_KEY_NOT_FOUND")
      // Still a row until the job's next run, one minute after the first.
      expect(yield* storedKeys).toEqual(["forever", "long", "short"])

      yield* TestClock.adjust("50 seconds")
      yield* settled(["forever", "long"])
      yield* TestClock.adjust("60 seconds")
      yield* settled(["forever"])
      expect((yield* memory.get(TENANT, SESSION, "forever")).value).toBe("no ttl")
    })
  ))
