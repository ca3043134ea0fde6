/**
 * The event registry under TestClock: `: ping` every 15 s and a check that fills any gap; events
 * routed to their session's streams only; one check and one catch-up read per session shared by all
 * its streams; a check every second while the bus is unwell; nothing kept once the streams close.
 */
import { expect, test } from "bun:test"
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Layer, Option, Ref, Stream, TestClock, TestContext } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Cache from "../../layers/cache/Cache.js"
import * as Database from "../../layers/database/Database.js"
import { type BusListener, EventBus } from "../../layers/events/EventBus.js"
import { ErrorLedger } from "../../services/ErrorLedger.js"
import { ErrorsRepo } from "../../services/ErrorsRepo.js"
import { SESSION, seedSession, TENANT } from "../support/seed.js"
import { Events, type EventsOptions, type StreamCaps, type StreamItem } from "../../services/Events.js"
import { MessagesRepo, toMessage } from "../../services/MessagesRepo.js"


/** Reads of the repository the registry makes, by kind. */
const reads = { listAfter: 0, lastSeq: 0, lastSeqs: 0 }

/** The real repository, its reads counted. */
const CountingRepo = Layer.effect(
  MessagesRepo,
  Effect.map(MessagesRepo, (repo) =>
    MessagesRepo.make({
      ...repo,
      listAfter: (...args) => Effect.zipRight(Effect.sync(() => reads.listAfter++), repo.listAfter(...args)),
      lastSeq: (...args) => Effect.zipRight(Effect.sync(() => reads.lastSeq++), repo.lastSeq(...args)),
      lastSeqs: (...args) => Effect.zipRight(Effect.sync(() => reads.lastSeqs++), repo.lastSeqs(...args))
    }))
).pipe(Layer.provide(MessagesRepo.Default))

/** A bus whose health the test sets, as the probe of a Redis bus would: delivery stays in process. */
const bus = { healthy: true, listener: undefined as BusListener | undefined }
const ControlledBus = Layer.succeed(EventBus, EventBus.of({
  publish: (event) => Effect.sync(() => bus.listener?.event(event)),
  listen: (listener) => Effect.acquireRelease(Effect.sync(() => void (bus.listener = listener)), () => Effect.sync(() => void (bus.listener = undefined))),
  healthy: Effect.sync(() => bus.healthy)
}))

const setBusHealth = (healthy: boolean) => Effect.sync(() => {
  bus.healthy = healthy
  bus.listener?.health(healthy)
})

const withEvents = <A, E>(
  program: Effect.Effect<A, E, Events | MessagesRepo | SqlClient.SqlClient>,
  eventBus: Layer.Layer<EventBus> = EventBus.layer.pipe(Layer.provide(Cache.inProcess())),
  options: EventsOptions = {}
) => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-events-"))
  const database = Database.layer({ url: { _tag: "SqliteFile", filename: join(directory, "events.db") }, sqliteBusyTimeoutMillis: 50 })
  const ledger = ErrorLedger.Default({ retentionDays: 30, purgeEvery: "1 day", linger: 0 }).pipe(Layer.provide(ErrorsRepo.Default))
  reads.listAfter = reads.lastSeq = reads.lastSeqs = 0
  bus.healthy = true
  const events = Events.layer(options).pipe(Layer.provideMerge(CountingRepo), Layer.provide(Layer.merge(eventBus, ledger)))
  return Effect.runPromise(
    program.pipe(Effect.provide(events.pipe(Layer.provideMerge(database))), Effect.provide(TestContext.TestContext), Effect.scoped)
  ).finally(() => rmSync(directory, { recursive: true, force: true }))
}

const withCaps = <A, E>(program: Effect.Effect<A, E, Events | MessagesRepo | SqlClient.SqlClient>, caps: StreamCaps) =>
  withEvents(program, undefined, { caps })

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

const SESSION_B = "00000000-0000-4000-8000-000000000003"

const seedSecondSession = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`INSERT INTO sessions (tenant_id, id, title, metadata, created_at, updated_at)
      VALUES (${TENANT}, ${SESSION_B}, NULL, '{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`)

let created = 0
/** Stores a message as a post does; announced only when asked. */
const store = (sessionId: string, content: string, announce: boolean) =>
  Effect.gen(function*() {
    const repo = yield* MessagesRepo
    const events = yield* Events
    const row = yield* repo.append(TENANT, {
      id: crypto.randomUUID(),
      session_id: sessionId,
      agent_id: "a",
      content,
      metadata: {},
      created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, ++created % 60)).toISOString()
    })
    const message = toMessage(Option.getOrThrow(row))
    if (announce) yield* events.messagePosted(TENANT, message)
    return message
  })

/** `count` streams of a session, each collecting what it receives. */
const openStreams = (sessionId: string, count: number, after = 0) =>
  Effect.gen(function*() {
    const events = yield* Events
    return yield* Effect.forEach(Array.from({ length: count }), () =>
      Effect.gen(function*() {
        const items = yield* Ref.make<ReadonlyArray<StreamItem>>([])
        const fiber = yield* events.stream(TENANT, sessionId, after).pipe(
          Stream.runForEach((item) => Ref.update(items, (seen) => [...seen, item])),
          Effect.fork
        )
        return { items, fiber }
      }))
  })

const contents = (items: ReadonlyArray<StreamItem>) => items.flatMap((item) => item._tag === "Message" ? [`${item.message.seq}:${item.message.content}`] : [])

/** Lets the registry's first reads (one per new session) finish on the real scheduler. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
})

test("events reach the streams of their session only, in order, once", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      yield* seedSecondSession
      const onA = yield* openStreams(SESSION, 3)
      const onB = yield* openStreams(SESSION_B, 2)
      yield* settle
      yield* store(SESSION, "a1", true)
      yield* store(SESSION_B, "b1", true)
      yield* store(SESSION, "a2", true)
      for (const stream of onA) expect(contents(yield* until(stream.items, (seen) => seen.length === 2))).toEqual(["1:a1", "2:a2"])
      for (const stream of onB) expect(contents(yield* until(stream.items, (seen) => seen.length === 1))).toEqual(["1:b1"])
      yield* settle
      for (const stream of onB) expect((yield* Ref.get(stream.items)).length).toBe(1)
      yield* Effect.forEach([...onA, ...onB], (stream) => Fiber.interrupt(stream.fiber))
    })
  ))

test("a gap in the events is filled by one read shared by every stream of the session", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      const streams = yield* openStreams(SESSION, 50)
      yield* settle
      expect(reads.lastSeq).toBe(1)
      const before = reads.listAfter
      yield* store(SESSION, "announced", true)
      yield* store(SESSION, "lost", false)
      yield* store(SESSION, "skips ahead", true)
      for (const stream of streams) {
        expect(contents(yield* until(stream.items, (seen) => seen.length === 3))).toEqual(["1:announced", "2:lost", "3:skips ahead"])
      }
      expect(reads.listAfter - before).toBe(1)
      yield* Effect.forEach(streams, (stream) => Fiber.interrupt(stream.fiber))
    })
  ))

test("a heartbeat pings every stream and checks every session in one read, then one catch-up read per session behind", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      yield* seedSecondSession
      const onA = yield* openStreams(SESSION, 20)
      const onB = yield* openStreams(SESSION_B, 20)
      yield* settle
      yield* store(SESSION, "unannounced", false)
      const before = { ...reads }
      yield* TestClock.adjust("15 seconds")
      for (const stream of onA) {
        const seen = yield* until(stream.items, (seen) => seen.length === 2)
        expect(seen[0]).toEqual({ _tag: "Ping" })
        expect(contents(seen)).toEqual(["1:unannounced"])
      }
      for (const stream of onB) expect(yield* until(stream.items, (seen) => seen.length === 1)).toEqual([{ _tag: "Ping" }])
      expect(reads.lastSeqs - before.lastSeqs).toBe(1)
      expect(reads.listAfter - before.listAfter).toBe(1)
      yield* Effect.forEach([...onA, ...onB], (stream) => Fiber.interrupt(stream.fiber))
    })
  ))

test("while the bus is unwell every session is checked each second; once well again, at once", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      const [stream] = yield* openStreams(SESSION, 1)
      yield* settle
      const checks = reads.lastSeqs
      yield* TestClock.adjust("3 seconds")
      yield* settle
      expect(reads.lastSeqs).toBe(checks)

      yield* setBusHealth(false)
      yield* store(SESSION, "missed 1", false)
      yield* TestClock.adjust("1 second")
      expect(contents(yield* until(stream!.items, (seen) => seen.length === 1))).toEqual(["1:missed 1"])
      yield* store(SESSION, "missed 2", false)
      yield* TestClock.adjust("1 second")
      expect(contents(yield* until(stream!.items, (seen) => seen.length === 2))).toEqual(["1:missed 1", "2:missed 2"])
      expect(reads.lastSeqs - checks).toBe(2)

      yield* store(SESSION, "missed just before", false)
      yield* setBusHealth(true)
      expect(contents(yield* until(stream!.items, (seen) => seen.length === 3))[2]).toBe("3:missed just before")
      const afterRecovery = reads.lastSeqs
      yield* TestClock.adjust("5 seconds")
      yield* settle
      expect(reads.lastSeqs).toBe(afterRecovery)
      yield* Fiber.interrupt(stream!.fiber)
    }),
    ControlledBus
  ))

test("a stream resuming from far behind reads its own pages, then joins the shared ones", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      const live = yield* openStreams(SESSION, 1)
      yield* settle
      for (let i = 1; i <= 300; i++) yield* store(SESSION, `m${i}`, true)
      const [behind] = yield* openStreams(SESSION, 1, 5)
      const seen = contents(yield* until(behind!.items, (seen) => seen.length === 295))
      expect(seen[0]).toBe("6:m6")
      expect(seen[294]).toBe("300:m300")
      expect(new Set(seen).size).toBe(295)
      yield* store(SESSION, "next", true)
      expect(contents(yield* until(behind!.items, (seen) => seen.length === 296))[295]).toBe("301:next")
      expect((yield* Ref.get(live[0]!.items)).length).toBe(301)
      yield* Effect.forEach([...live, behind!], (stream) => Fiber.interrupt(stream.fiber))
    })
  ))

test("closing the streams releases their sessions: nothing is kept", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      yield* seedSecondSession
      const events = yield* Events
      const streams = [...yield* openStreams(SESSION, 10), ...yield* openStreams(SESSION_B, 10)]
      yield* settle
      expect(yield* events.registrySize).toEqual({ sessions: 2, streams: 20 })
      yield* Effect.forEach(streams, (stream) => Fiber.interrupt(stream.fiber))
      expect(yield* events.registrySize).toEqual({ sessions: 0, streams: 0 })
    })
  ))

test("a topic keeps at most 256 KiB of content for its streams; a stream behind that reads its own page", () =>
  withEvents(
    Effect.gen(function*() {
      yield* seedSession
      const live = yield* openStreams(SESSION, 1)
      yield* settle
      const big = "x".repeat(60 * 1024)
      for (let i = 1; i <= 8; i++) yield* store(SESSION, `${i}${big}`, true)
      yield* until(live[0]!.items, (seen) => seen.length === 8)
      // Within the last 256 KiB: served from the topic, no read.
      const before = reads.listAfter
      const [recent] = yield* openStreams(SESSION, 1, 5)
      expect(contents(yield* until(recent!.items, (seen) => seen.length === 3)).map((text) => text.slice(0, 3))).toEqual(["6:6", "7:7", "8:8"])
      expect(reads.listAfter).toBe(before)
      // Further behind than the topic keeps: one read of its own.
      const [behind] = yield* openStreams(SESSION, 1, 1)
      expect(contents(yield* until(behind!.items, (seen) => seen.length === 7)).map((text) => text.slice(0, 3))).toEqual(["2:2", "3:3", "4:4", "5:5", "6:6", "7:7", "8:8"])
      expect(reads.listAfter).toBe(before + 1)
      yield* Effect.forEach([...live, recent!, behind!], (stream) => Fiber.interrupt(stream.fiber))
    })
  ))

/** One turn of the real event loop (the admission queue moves on `setImmediate`). */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

test("stream opens are admitted at most 16 per turn of the event loop, in order; one that gives up waiting frees its slot", () =>
  withEvents(
    Effect.gen(function*() {
      const events = yield* Events
      const admitted: Array<number> = []
      const fibers = yield* Effect.forEach(Array.from({ length: 40 }, (_, index) => index), (index) =>
        Effect.fork(Effect.tap(events.admit("key"), () => Effect.sync(() => admitted.push(index)))))
      // Every open has its slot at once, and waits for its turn.
      yield* Effect.yieldNow()
      expect((yield* events.streamCounts).open).toBe(40)
      expect(admitted).toEqual([])
      yield* Fiber.interrupt(fibers[39]!)
      expect((yield* events.streamCounts).open).toBe(39)
      yield* turn
      yield* Effect.yieldNow()
      expect(admitted).toEqual(Array.from({ length: 16 }, (_, index) => index))
      yield* turn
      yield* Effect.yieldNow()
      expect(admitted.length).toBe(32)
      yield* turn
      yield* Effect.yieldNow()
      expect(admitted).toEqual(Array.from({ length: 39 }, (_, index) => index))
    })
  ))

test("past the key's cap an open is refused with 429 at once, past the process's with 503; a released slot is free again", () =>
  Effect.gen(function*() {
    const events = yield* Events
    const first = yield* events.admit("a")
    const second = yield* events.admit("a")
    expect((yield* Effect.flip(events.admit("a")))._tag).toBe("RateLimited")
    yield* events.admit("b")
    expect((yield* Effect.flip(events.admit("c")))._tag).toBe("Overloaded")
    first.release()
    // Released twice, counted once.
    first.release()
    expect(yield* events.streamCounts).toEqual({ open: 2, perKeyCap: 2, processCap: 3 })
    yield* events.admit("a")
    second.release()
  }).pipe((program) => withCaps(program, { perKey: 2, total: 3 })))
