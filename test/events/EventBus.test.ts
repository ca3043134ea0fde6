/**
 * The event bus's own health and its second tries, under TestClock, over a pub/sub in this process
 * that stands in for Redis (the fault tests in test/faults/fanout.test.ts use a real one): unwell
 * until its own probe comes back, when a probe fails, and when a process it heard goes quiet; a
 * publish that failed is sent again, the newest per session, with the next probe that gets through.
 */
import { expect, test } from "bun:test"
import { Context, Effect, Exit, Layer, Logger, Schema, Scope, TestClock, TestContext } from "effect"
import * as Cache from "../../layers/cache/Cache.js"
import { defaultBusHealth, Envelope, EventBus, envelopeText, type SessionEvent } from "../../layers/events/EventBus.js"
import { Message } from "../../src/domain/Message.js"
import { CacheUnavailable } from "../../src/errors.js"

/** One channel in process, shared by the "processes" that join it; each has its own switch that makes its publishes fail. */
const makeChannel = () => {
  const listeners = new Set<(text: string) => void>()
  const join = (switches: { failing: boolean }) =>
    Layer.effect(
      Cache.Cache,
      Effect.map(Cache.Cache, (memory) =>
        Cache.Cache.of({
          ...memory,
          kind: "redis",
          publish: (_name, text) =>
            Effect.suspend(() => {
              if (switches.failing) {
                return Effect.fail(new CacheUnavailable({ operation: "publish", reason: "redis_error", retryAfterSeconds: 1, cause: null }))
              }
              for (const listener of [...listeners]) listener(text)
              return Effect.void
            }),
          subscribe: (_name, onMessage) =>
            Effect.acquireRelease(Effect.sync(() => void listeners.add(onMessage)), () => Effect.sync(() => void listeners.delete(onMessage)))
        }))
    ).pipe(Layer.provide(Cache.inProcess()))
  return { join }
}

const SESSION_A = "00000000-0000-4000-8000-00000000000a"
const SESSION_B = "00000000-0000-4000-8000-00000000000b"

const posted = (sessionId: string, seq: number): SessionEvent => ({
  _tag: "MessagePosted",
  tenantId: "t",
  message: new Message({ id: crypto.randomUUID(), session_id: sessionId, seq, agent_id: "a", content: `m${seq}`, metadata: {}, created_at: "2026-01-01T00:00:00.000Z" })
})

/** A process on the channel, for the life of `scope`: its bus, its publish switch, what its listener was told. */
const startProcess = (channel: ReturnType<typeof makeChannel>, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const switches = { failing: false }
    const context = yield* Layer.buildWithScope(EventBus.layerWith(defaultBusHealth).pipe(Layer.provide(channel.join(switches))), scope)
    const bus = Context.get(context, EventBus)
    const told = { health: [] as Array<boolean>, events: [] as Array<SessionEvent> }
    yield* Scope.extend(bus.listen({ event: (event) => void told.events.push(event), health: (healthy) => void told.health.push(healthy) }), scope)
    return { bus, switches, told }
  })

const run = <A, E>(program: (scope: Scope.Scope) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(Effect.scope, program)).pipe(Effect.provide(TestContext.TestContext)))

/** Lets forked probes run after the clock moved. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

const advance = (millis: number) => Effect.zipRight(TestClock.adjust(`${millis} millis`), settle)

test("unwell until its own probe comes back; unwell when a probe fails; well again once probes return", () =>
  run((scope) =>
    Effect.gen(function*() {
      const process = yield* startProcess(makeChannel(), scope)
      yield* settle
      // The first probe went out at start and came back.
      expect(yield* process.bus.healthy).toBe(true)
      process.switches.failing = true
      yield* advance(250)
      expect(yield* process.bus.healthy).toBe(false)
      process.switches.failing = false
      yield* advance(250)
      expect(yield* process.bus.healthy).toBe(true)
      expect(process.told.health).toEqual([true, false, true])
    })
  ))

test("a process that goes quiet makes the others' bus unwell within 750 ms; one that leaves on purpose does not", () =>
  run((scope) =>
    Effect.gen(function*() {
      const channel = makeChannel()
      const watcher = yield* startProcess(channel, scope)
      const quiet = yield* startProcess(channel, scope)
      yield* advance(250)
      expect(yield* watcher.bus.healthy).toBe(true)

      // It cannot publish (as when its own cache breaker is open): its events are being lost.
      quiet.switches.failing = true
      yield* advance(500)
      expect(yield* watcher.bus.healthy).toBe(true)
      yield* advance(500)
      expect(yield* watcher.bus.healthy).toBe(false)
      quiet.switches.failing = false
      yield* advance(250)
      expect(yield* watcher.bus.healthy).toBe(true)

      const leavingScope = yield* Scope.make()
      yield* startProcess(channel, leavingScope)
      yield* advance(250)
      yield* Scope.close(leavingScope, Exit.void)
      yield* advance(2000)
      expect(yield* watcher.bus.healthy).toBe(true)
      expect(watcher.told.health).toEqual([true, false, true])
    })
  ))

test("a failed publish is delivered here at once, and to the others with the next probe that gets through: the newest per session", () =>
  run((scope) =>
    Effect.gen(function*() {
      const channel = makeChannel()
      const listener = yield* startProcess(channel, scope)
      const poster = yield* startProcess(channel, scope)
      yield* advance(250)
      poster.switches.failing = true
      for (const event of [posted(SESSION_A, 1), posted(SESSION_B, 1), posted(SESSION_A, 2)]) {
        const failed = yield* Effect.flip(poster.bus.publish(event))
        expect(failed._tag).toBe("CacheUnavailable")
      }
      expect(poster.told.events.length).toBe(3)
      expect(listener.told.events).toEqual([])
      poster.switches.failing = false
      yield* advance(250)
      const heard = listener.told.events.map((event) => event._tag === "MessagePosted" ? `${event.message.session_id.slice(-1)}${event.message.seq}` : "")
      expect(heard).toEqual(["b1", "a2"])
      // Sent once: later probes do not repeat them.
      yield* advance(1000)
      expect(listener.told.events.length).toBe(2)
    })
  ))

test("an event is published as the envelope's schema encodes it, and decodes back to the same event", () => {
  const message = new Message({
    id: "00000000-0000-7000-8000-000000000001",
    session_id: SESSION_A,
    seq: 7,
    agent_id: "agent-ü",
    content: "line one\nline \"two\" \u2028 ✓",
    metadata: { nested: { list: [1, "two", null, true] }, empty: {} },
    created_at: "2026-12-02T10:00:00.000Z"
  })
  const events: ReadonlyArray<SessionEvent> = [
    { _tag: "MessagePosted", tenantId: "tenant-1", message },
    { _tag: "SessionDeleted", tenantId: "tenant-1", sessionId: SESSION_B }
  ]
  for (const event of events) {
    const text = envelopeText("origin-1", event)
    expect(JSON.parse(text)).toEqual(JSON.parse(Schema.encodeSync(Envelope)({ origin: "origin-1", event })))
    expect(Schema.decodeUnknownSync(Envelope)(text)).toEqual({ origin: "origin-1", event })
  }
})

test("a listener that throws does not fail the publish (the message is stored): the defect is logged", async () => {
  const logged: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => void logged.push(`${logLevel.label} ${String(message)}`))
  const bus = EventBus.layerWith(defaultBusHealth).pipe(Layer.provide(Cache.inProcess()), Layer.provide(Logger.replace(Logger.defaultLogger, logger)))
  const exit = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const events = yield* EventBus
    yield* events.listen({
      event: () => {
        throw new Error("a broken stream")
      },
      health: () => {}
    })
    return yield* Effect.exit(events.publish({ _tag: "SessionDeleted", tenantId: "tenant-1", sessionId: SESSION_A }))
  }).pipe(Effect.provide(bus))))
  expect(Exit.isSuccess(exit)).toBe(true)
  // Logged on a fiber of its own: wait for it rather than for a fixed time.
  for (let waited = 0; waited < 2000 && logged.length === 0; waited += 5) await new Promise((resolve) => setTimeout(resolve, 5))
  expect(logged).toContain("ERROR delivering a session event in process failed")
})
