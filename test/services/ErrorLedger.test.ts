/** The ledger's retention job and writer, driven by TestClock on a real SQLite file. */
import { describe, expect, test } from "bun:test"
import { Effect, Layer, Metric, Option, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Database from "../../layers/database/Database.js"
import { ErrorLedger, type ErrorLedgerOptions, fingerprintOf, severityOf } from "../../services/ErrorLedger.js"
import { ErrorsRepo, type LedgerRow } from "../../services/ErrorsRepo.js"
import { Internal, NotFound, DbOperational } from "../../src/errors.js"
import { ledgerDroppedTotal } from "../../src/telemetry/Metrics.js"

const withLedger = <A, E>(program: Effect.Effect<A, E, ErrorLedger | ErrorsRepo>, options: Partial<ErrorLedgerOptions> = {}) => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-ledger-"))
  const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "ledger.db") }, sqliteBusyTimeoutMillis: 50 })
  const repo = ErrorsRepo.Default.pipe(Layer.provide(database))
  const ledger = ErrorLedger.Default({ retentionDays: 30, purgeEvery: "1 day", linger: 0, ...options }).pipe(Layer.provide(repo))
  return Effect.runPromise(
    program.pipe(Effect.provide(Layer.merge(ledger, repo)), Effect.provide(TestContext.TestContext), Effect.scoped)
  ).finally(() => rmSync(directory, { recursive: true, force: true }))
}

/** Waits (on the real scheduler, not the clock) until the writer fiber has stored `errorId`. */
const stored = (errorId: string) =>
  Effect.flatMap(ErrorsRepo, (repo) =>
    Effect.zipRight(Effect.yieldNow(), repo.find(errorId)).pipe(
      Effect.flatMap(Option.match({ onNone: () => Effect.fail("not yet" as const), onSome: Effect.succeed })),
      Effect.retry({ times: 1000 }),
      Effect.orDie
    ))

describe("retention", () => {
  test("rows older than BULWARK_ERROR_RETENTION_DAYS are deleted by the periodic job; newer ones stay", () =>
    withLedger(
      Effect.gen(function*() {
        const ledger = yield* ErrorLedger
        const repo = yield* ErrorsRepo
        const old = yield* ledger.record(new NotFound({ code: "SESSION_NOT_FOUND", detail: "old" }))
        yield* stored(old)
        yield* TestClock.adjust("20 days")
        const recent = yield* ledger.record(new NotFound({ code: "SESSION_NOT_FOUND", detail: "recent" }))
        yield* stored(recent)
        // Day 31: the old row is past 30 days, the recent one (day 20) is not.
        yield* TestClock.adjust("11 days")
        expect(Option.isNone(yield* repo.find(old))).toBe(true)
        expect(Option.isSome(yield* repo.find(recent))).toBe(true)
        yield* TestClock.adjust("20 days")
        expect(Option.isNone(yield* repo.find(recent))).toBe(true)
      })
    ))
})

describe("classification", () => {
  test("severity: defects critical, dependency 5xx error, 4xx warning", () => {
    expect(severityOf(new Internal({ reason: "bug", cause: new Error("x") }))).toBe("critical")
    expect(severityOf(new DbOperational({ operation: "x", reason: "locked", transient: true, retryAfterSeconds: 1, cause: null }))).toBe("error")
    expect(severityOf(new NotFound({ code: "SESSION_NOT_FOUND", detail: "x" }))).toBe("warning")
  })

  test("the fingerprint is stable across line numbers and differs by code and route", () => {
    const stackA = "Error: x\n    at handler (/app/src/a.ts:10:5)\n    at other (/app/b.ts:1:1)"
    const stackB = "Error: x\n    at handler (/app/src/a.ts:99:7)\n    at other (/app/b.ts:1:1)"
    expect(fingerprintOf("INTERNAL_ERROR", "/v1/sessions", stackA)).toBe(fingerprintOf("INTERNAL_ERROR", "/v1/sessions", stackB))
    expect(fingerprintOf("INTERNAL_ERROR", "/v1/sessions", stackA)).not.toBe(fingerprintOf("INTERNAL_ERROR", "/v1/other", stackA))
    expect(fingerprintOf("SESSION_NOT_FOUND", "/v1/sessions/:id", null)).not.toBe(fingerprintOf("KEY_NOT_FOUND", "/v1/sessions/:id", null))
  })
})

describe("a full queue", () => {
  test("a row that finds the queue full is one stderr line and a dropped count; record still answers at once, queued rows are written", async () => {
    const lines: Array<string> = []
    const originalWrite = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string | Uint8Array) => {
      lines.push(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk))
      return true
    }) as typeof process.stderr.write
    try {
      await withLedger(
        Effect.gen(function*() {
          const ledger = yield* ErrorLedger
          const repo = yield* ErrorsRepo
          const droppedBefore = (yield* Metric.value(ledgerDroppedTotal)).count
          // The writer takes the first row, then lingers (an hour of a clock that does not move):
          // the next two fill the queue and the fourth finds it full.
          const ids: Array<string> = []
          for (let i = 0; i < 4; i++) {
            ids.push(yield* ledger.record(new NotFound({ code: "SESSION_NOT_FOUND", detail: `row ${i}` })))
            yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
          }
          expect((yield* Metric.value(ledgerDroppedTotal)).count - droppedBefore).toBe(1)
          const dropped = lines.flatMap((chunk) => chunk.split("\n")).filter((line) => line.startsWith("{")).map((line) => JSON.parse(line))
          expect(dropped).toEqual([expect.objectContaining({ ledger: "dropped", reason: "the ledger queue is full", error_id: ids[3] })])
          yield* TestClock.adjust("1 hour")
          for (const id of ids.slice(0, 3)) yield* stored(id)
          expect(Option.isNone(yield* repo.find(ids[3]!))).toBe(true)
        }),
        { queueCapacity: 2, linger: "1 hour" }
      )
    } finally {
      process.stderr.write = originalWrite
    }
  })
})

describe("batched inserts", () => {
  test("batches of any size are written whole (301 rows in a statement of 512, 700 in two), and a row already stored does not fail the rest", () =>
    withLedger(
      Effect.gen(function*() {
        const repo = yield* ErrorsRepo
        const row = (i: number): LedgerRow => ({
          error_id: Bun.randomUUIDv7(),
          occurred_at: new Date(Date.UTC(2026, 11, 2, 0, 0, 0, i)).toISOString(),
          type: "http",
          code: "SESSION_NOT_FOUND",
          status: 404,
          message: `row ${i} with a NUL \u0000 and a lone surrogate \uD800`,
          stack: null,
          fingerprint: "f".repeat(16),
          severity: "warning",
          tenant_id: null,
          session_id: null,
          request_id: `request-${i}`,
          trace_id: null,
          method: "GET",
          route: "/v1/sessions/:id",
          user_agent: null,
          request_payload: i === 0 ? JSON.stringify({ i }) : null,
          request_payload_kind: i === 0 ? "json" : null
        })
        const first = row(0)
        yield* repo.insertBatch([first])
        const batch = [first, ...Array.from({ length: 300 }, (_, i) => row(i + 1))]
        yield* repo.insertBatch(batch)
        const stored = yield* repo.list({ limit: 1000 })
        expect(stored.length).toBe(301)
        expect(new Set(stored.map((record) => record.error_id))).toEqual(new Set(batch.map((r) => r.error_id)))
        const last = stored.find((record) => record.request_id === "request-300")
        expect(last?.message).toBe("row 300 with a NUL \uFFFD and a lone surrogate \uFFFD")
        expect(last?.status).toBe(404)
        expect(stored.find((record) => record.error_id === first.error_id)?.request_payload).toEqual({ i: 0 })
        const larger = Array.from({ length: 700 }, (_, i) => row(i + 1000))
        yield* repo.insertBatch(larger)
        expect((yield* repo.list({ limit: 2000 })).length).toBe(1001)
      })
    ))
})
