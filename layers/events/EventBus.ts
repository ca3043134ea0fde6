/**
 * Session events between the writers and the open event streams (SPEC §4, §8). In this process an
 * event goes straight to the process's one listener; with Redis each event is also published on one
 * channel, and every process hands what it hears from the others to its own listener. Local delivery
 * never waits on Redis. An event is a wake-up call, not the record: streams read messages from the
 * database, so a lost event delays a subscriber until its next check, and never loses a message.
 *
 * With Redis the bus also watches itself: every process publishes a probe of its own on the channel
 * and expects to hear it back. While it cannot (Redis down or paused, the cache's breaker open, the
 * subscription lost or not yet back), the bus is unwell, and its listener is told, so that streams
 * check the database every second instead of trusting silence.
 */
import { Clock, Context, Duration, Effect, Either, Layer, Runtime, Schedule, Schema, type Scope } from "effect"
import { Cache } from "../cache/Cache.js"
import { Message } from "../../src/domain/Message.js"
import type { CacheUnavailable } from "../../src/errors.js"

export const SessionEvent = Schema.Union(
  Schema.TaggedStruct("MessagePosted", { tenantId: Schema.String, message: Message }),
  Schema.TaggedStruct("SessionDeleted", { tenantId: Schema.String, sessionId: Schema.String })
)
export type SessionEvent = typeof SessionEvent.Type

const Envelope = Schema.parseJson(Schema.Struct({ origin: Schema.String, event: SessionEvent }))
const encodeEnvelope = Schema.encodeSync(Envelope)
const decodeEnvelope = Schema.decodeUnknownEither(Envelope)

export const CHANNEL = "bulwark:session-events"

/** Probes are plain text with this prefix, told apart from events without decoding JSON. */
const PROBE_PREFIX = "probe:"

export interface BusHealthOptions {
  /** How often this process publishes its probe. */
  readonly probeEvery: Duration.DurationInput
  /** Unwell when its own probe has not come back for this long. */
  readonly unwellAfter: Duration.DurationInput
}

export const defaultBusHealth: BusHealthOptions = { probeEvery: "250 millis", unwellAfter: "750 millis" }

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
        let healthy = cache.kind === "memory"
        let probeHeardAt = Number.NEGATIVE_INFINITY

        const setHealth = (now: boolean) => {
          if (now === healthy) return
          healthy = now
          listener.health(now)
        }

        const runFork = Runtime.runFork(yield* Effect.runtime<never>())
        const clock = yield* Effect.clock
        yield* cache.subscribe(CHANNEL, (text) => {
          if (text.startsWith(PROBE_PREFIX)) {
            if (text === probeText) {
              probeHeardAt = clock.unsafeCurrentTimeMillis()
              setHealth(true)
            }
            return
          }
          const decoded = decodeEnvelope(text)
          if (Either.isLeft(decoded)) {
            // Not ours to act on; streams catch up from the database whatever was meant.
            runFork(Effect.logWarning("an event on the session channel did not decode; ignored").pipe(
              Effect.annotateLogs({ channel: CHANNEL, sample: text.slice(0, 200) })
            ))
          } else if (decoded.right.origin !== origin) {
            // Our own events were delivered in process when they were published.
            listener.event(decoded.right.event)
          }
        })

        if (cache.kind === "redis") {
          const unwellAfter = Duration.toMillis(options.unwellAfter)
          // A probe that fails or does not come back in time makes the bus unwell; a busy event
          // loop can make it look unwell too, which costs a few database checks and nothing else.
          const probe = Effect.zipRight(
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => {
              if (now - probeHeardAt > unwellAfter) setHealth(false)
            })),
            cache.publish(CHANNEL, probeText).pipe(Effect.catchAll(() => Effect.sync(() => setHealth(false))))
          )
          yield* probe.pipe(Effect.repeat(Schedule.spaced(options.probeEvery)), Effect.forkScoped)
        }

        const publish = (event: SessionEvent) =>
          Effect.zipRight(
            Effect.sync(() => listener.event(event)),
            cache.publish(CHANNEL, encodeEnvelope({ origin, event }))
          )

        const listen = (next: BusListener) =>
          Effect.acquireRelease(Effect.sync(() => void (listener = next)), () => Effect.sync(() => void (listener = noListener)))

        return EventBus.of({ publish, listen, healthy: Effect.sync(() => healthy) })
      })
    )

  static readonly layer = EventBus.layerWith(defaultBusHealth)
}
