/** The event stream's heartbeat under TestClock: `: ping` every 15 s, and each one fills a gap. */
import { expect, test } from "bun:test"
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Layer, Ref, Stream, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Cache from "../../layers/cache/Cache.js"
import * as Database from "../../layers/database/Database.js"
import { EventBus } from "../../layers/events/EventBus.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { ErrorsRepo } from "../../services/ErrorsRepo.js"
import { SESSION, seedSession, TENANT } from "../support/seed.js"
import { Events, type StreamItem } from "../../services/Events.js"
import { MessagesRepo } from "../../services/MessagesRepo.js"


const withEvents = <A, E>(program: Effect.Effect<A, E, Events | MessagesRepo | SqlClient.SqlClient>) => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-events-"))
  const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "events.db") }, sqliteBusyTimeoutMillis: 50 })
  const ledger = ErrorLedger.layer({ retentionDays: 30, purgeEvery: "1 day", linger: 0 }).pipe(Layer.provide(ErrorsRepo.Default))
  const events = Events.layer().pipe(Layer.provideMerge(MessagesRepo.Default), Layer.provide(Layer.merge(EventBus.layer.pipe(Layer.provide(Cache.inProcess())), ledger)))
  return Effect.runPromise(
    program.pipe(Effect.provide(events.pipe(Layer.provideMerge(database))), Effect.provide(TestContext.TestContext), Effect.scoped)
  ).finally(() => rmSync(directory, { recursive: true, force: true }))
}

/** Waits on the real scheduler until the collected items satisfy `done`. */
const until = (items: Ref.Ref<ReadonlyArray<StreamItem>>, done: (items: ReadonlyArray<StreamItem>) => boolean) =>
  Effect.zipRight(Effect.yieldNow(), Ref.get(items)).pipe(
    Effect.filterOrFail(done, (seen) => `items so far: ${JSON.stringify(seen.map((item) => item._tag))}`),
    Effect.retry({ times: 1000 })
  )

test("a ping every 15 s by default; a message stored without an event arrives at the next ping", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      const events = yield* Events
      const repo = yield* MessagesRepo
      const items = yield* Ref.make<ReadonlyArray<StreamItem>>([])
      const consumer = yield* events.stream(TENANT, SESSION, 0).pipe(
        Stream.runForEach((item) => Ref.update(items, (seen) => [...seen, item])),
        Effect.fork
      )
      yield* TestClock.adjust("14999 millis")
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      expect(yield* Ref.get(items)).toEqual([])

      // Stored, but never announced (as when the announcement fails): the next ping finds it.
      yield* repo.append(TENANT, {
        id: crypto.randomUUID(),
        session_id: SESSION,
        agent_id: "a",
        content: "unannounced",
        metadata: {},
        created_at: "2026-01-01T00:00:01.000Z"
      })
      yield* TestClock.adjust("1 millis")
      const seen = yield* until(items, (seen) => seen.length === 2)
      expect(seen[0]).toEqual({ _tag: "Ping" })
      expect(seen[1]?._tag === "Message" && seen[1].message.content).toBe("unannounced")

      yield* TestClock.adjust("15 seconds")
      expect((yield* until(items, (seen) => seen.length === 3)).map((item) => item._tag)).toEqual(["Ping", "Message", "Ping"])
      yield* Fiber.interrupt(consumer)
    })
  ))
