/**
 * Session events between the writers and the open event streams (SPEC §4, §8). In this process an
 * event goes straight to the process's one listener; with Redis each event is also published on one
 * channel, and every process hands what it hears from the others to its own listener. Local delivery
 * never waits on Redis. An event is a wake-up call, not the record: streams read messages from the
 * database, so a lost event delays a subscriber until its next check, and never loses a message.
 *
 * With Redis the bus also watches itself: every process publishes a probe on the channel several
 * times a second and listens for its own and the others'. The bus is unwell while this process does
 * not hear its own probe (Redis down or paused, the cache's breaker open, the subscription lost or
 * not yet back), or no longer hears a process it heard in the last minute (that process cannot
 * publish, so its events are being lost); its listener is told, so that streams check the database
 * every second instead of trusting silence. An event that could not be published is published again
 * with the next probe that gets through (the newest per session: it is a hint to read, not data).
 */
import { Cause, Clock, Context, Duration, Effect, Either, Layer, Runtime, Schedule, Schema, type Scope } from "effect"
import * as Supervised from "../resilience/Supervised.js"
import { Cache } from "../cache/Cache.js"
import { Message } from "../../src/domain/Message.js"
import type { CacheUnavailable } from "../../src/errors.js"
import { sanitizeSample } from "../../src/telemetry/Sanitize.js"

export const SessionEvent = Schema.Union(
  Schema.TaggedStruct("MessagePosted", { tenantId: Schema.String, message: Message }),
  Schema.TaggedStruct("SessionDeleted", { tenantId: Schema.String, sessionId: Schema.String })
)
export type SessionEvent = typeof SessionEvent.Type

export const Envelope = Schema.parseJson(Schema.Struct({ origin: Schema.String, event: SessionEvent }))
const decodeEnvelope = Schema.decodeUnknownEither(Envelope)

/**
 * An event as published. Every field of an event is already its encoded form (text, numbers, a JSON
 * object, and `Message`, a class whose JSON is its fields), so `JSON.stringify` writes what encoding
 * with `Envelope` writes, without the schema's pass over a message built from a stored row (about
 * 6 µs a post). The bus's tests hold the two equal; receivers still decode with `Envelope`.
 */
export const envelopeText = (origin: string, event: SessionEvent): string => JSON.stringify({ origin, event })

export const CHANNEL = "bulwark:session-events"

/** Probes (and a leaving process's last word) are plain text, told apart from events without decoding JSON. */
const PROBE_PREFIX = "probe:"
const LEAVE_PREFIX = "leave:"

/** Events kept for a later publish, at most (one per session); past it the oldest is dropped (its streams check the database). */
const UNSENT_LIMIT = 10_000

export interface BusHealthOptions {
  /** How often this process publishes its probe. */
  readonly probeEvery: Duration.DurationInput
  /** Unwell when its own probe, or a process heard recently, has not been heard for this long. */
  readonly unwellAfter: Duration.DurationInput
  /** A process not heard for this long is taken to be gone (the cache breaker's longest open time). */
  readonly forgetAfter: Duration.DurationInput
  /**
   * Other processes may write to the same database (PostgreSQL, or a SQLite file). Without Redis
   * they cannot be heard at all, so the bus is never well and streams check the database every second.
   */
  readonly sharedDatabase?: boolean
}

export const defaultBusHealth: BusHealthOptions = { probeEvery: "250 millis", unwellAfter: "750 millis", forgetAfter: "60 seconds" }

/** What the process's listener is told: every event, and each change of the bus's health. */
export interface BusListener {
  readonly event: (event: SessionEvent) => void
  /** `false`: events from other processes may be missed from now on; `true`: they arrive again. */
  readonly health: (healthy: boolean) => void
}

export interface EventBusShape {
  /** Delivers in this process at once; fails only if other processes could not be told. */
  readonly publish: (event: SessionEvent) => Effect.Effect<void, CacheUnavailable>
  /** The process's one listener, for the life of the scope (a second one replaces the first). */
  readonly listen: (listener: BusListener) => Effect.Effect<void, never, Scope.Scope>
  /** Whether events from other processes can be relied on now (always, in one process). */
  readonly healthy: Effect.Effect<boolean>
}

export class EventBus extends Context.Tag("bulwark/EventBus")<EventBus, EventBusShape>() {
  static readonly layerWith = (options: BusHealthOptions) =>
    Layer.scoped(
      EventBus,
      Effect.gen(function*() {
        const cache = yield* Cache
        const origin = crypto.randomUUID()
        const probeText = `${PROBE_PREFIX}${origin}`
        const noListener: BusListener = { event: () => {}, health: () => {} }
        let listener = noListener
        // In one process nothing can be missed; with Redis, nothing is trusted until a probe returns.
        const deaf = cache.kind === "memory" && options.sharedDatabase === true
        let healthy = cache.kind === "memory" && !deaf
        if (deaf) {
          yield* Effect.logInfo("no REDIS_URL: open event streams check the database every second for messages posted by other processes")
        }
        let probeHeardAt = Number.NEGATIVE_INFINITY
        /** Other processes by origin: when each was last heard. */
        const peers = new Map<string, number>()
        /** Events that could not be published, the newest per session, in the order they failed. */
        const unsent = new Map<string, string>()
        const unwellAfter = Duration.toMillis(options.unwellAfter)
        const forgetAfter = Duration.toMillis(options.forgetAfter)

        const setHealth = (now: boolean) => {
          if (now === healthy) return
          healthy = now
          listener.health(now)
        }

        /** Well when this process and every process heard lately were heard just now. */
        const assess = (now: number) => {
          let well = now - probeHeardAt <= unwellAfter
          for (const [peer, heardAt] of peers) {
            if (now - heardAt > forgetAfter) peers.delete(peer)
            else if (now - heardAt > unwellAfter) well = false
          }
          setHealth(well)
        }

        const runFork = Runtime.runFork(yield* Effect.runtime<never>())
        const clock = yield* Effect.clock
        const hear = (text: string) => {
          const now = clock.unsafeCurrentTimeMillis()
          if (text.startsWith(PROBE_PREFIX)) {
            if (text === probeText) probeHeardAt = now
            else peers.set(text.slice(PROBE_PREFIX.length), now)
            return assess(now)
          }
          if (text.startsWith(LEAVE_PREFIX)) {
            peers.delete(text.slice(LEAVE_PREFIX.length))
            return assess(now)
          }
          const decoded = decodeEnvelope(text)
          if (Either.isLeft(decoded)) {
            // Not ours to act on; streams catch up from the database whatever was meant.
            runFork(Effect.logWarning("an event on the session channel did not decode; ignored").pipe(
              Effect.annotateLogs({ channel: CHANNEL, sample: sanitizeSample(text) })
            ))
          } else if (decoded.right.origin !== origin) {
            // Our own events were delivered in process when they were published.
            try {
              listener.event(decoded.right.event)
            } catch (defect) {
              runFork(Effect.logError("delivering a session event from another process failed", Cause.die(defect)))
            }
          }
        }
        yield* cache.subscribe(CHANNEL, hear)

        const sessionOf = (event: SessionEvent) =>
          `${event.tenantId}/${event._tag === "MessagePosted" ? event.message.session_id : event.sessionId}`

        const keepUnsent = (event: SessionEvent, text: string) => {
          const session = sessionOf(event)
          unsent.delete(session)
          unsent.set(session, text)
          if (unsent.size > UNSENT_LIMIT) unsent.delete(unsent.keys().next().value!)
        }

        /** Publishes what failed before, oldest first, until one fails again. */
        const sendUnsent = Effect.suspend(() =>
          Effect.forEach([...unsent], ([session, text]) =>
            Effect.zipRight(cache.publish(CHANNEL, text), Effect.sync(() => {
              if (unsent.get(session) === text) unsent.delete(session)
            })), { discard: true })
        )

        if (cache.kind === "redis") {
          // A probe that fails or does not come back in time makes the bus unwell; a busy event
          // loop can make it look unwell too, which costs a few database checks and nothing else.
          const probe = Effect.zipRight(
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => assess(now))),
            cache.publish(CHANNEL, probeText).pipe(
              Effect.zipRight(sendUnsent),
              // Told through health: the cache's own breaker and ledger account for the failure.
              Effect.catchAll(() => Effect.sync(() => setHealth(false)))
            )
          )
          yield* probe.pipe(Effect.repeat(Schedule.spaced(options.probeEvery)), Supervised.loop("event-bus-probe"), Effect.forkScoped)
          // Leaving on purpose: the others need not wait a minute to stop watching for this process.
          yield* Effect.addFinalizer(() =>
            cache.publish(CHANNEL, `${LEAVE_PREFIX}${origin}`).pipe(
              Effect.timeout("200 millis"),
              Effect.catchAll(() => Effect.logDebug("could not say goodbye on the session channel; the others forget this process in a minute"))
            )
          )
        }

        /** The message is stored: a defect among this process's streams must not fail its post. */
        const deliver = (event: SessionEvent) => {
          try {
            listener.event(event)
          } catch (defect) {
            runFork(Effect.logError("delivering a session event in process failed", Cause.die(defect)))
          }
        }
        const publish = (event: SessionEvent) => {
          // Without Redis there is no one else to tell, so nothing is written out. One plain step
          // either way (catching the defect as an effect cost more than the delivery).
          if (cache.kind === "memory") return Effect.sync(() => deliver(event))
          const text = envelopeText(origin, event)
          return Effect.zipRight(
            Effect.sync(() => deliver(event)),
            cache.publish(CHANNEL, text).pipe(Effect.tapError(() => Effect.sync(() => keepUnsent(event, text))))
          )
        }

        const listen = (next: BusListener) =>
          Effect.acquireRelease(Effect.sync(() => void (listener = next)), () => Effect.sync(() => void (listener = noListener)))

        return EventBus.of({ publish, listen, healthy: Effect.sync(() => healthy) })
      })
    )

  static readonly layer = EventBus.layerWith(defaultBusHealth)
}
