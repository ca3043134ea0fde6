/**
 * Session events between the writers and the open event streams (SPEC §4, §8). In this process an
 * `effect` `PubSub` delivers them; with Redis each event is also published on one channel, and every
 * process feeds what it hears from the others into its own `PubSub`. Local delivery never waits on
 * Redis. An event is a wake-up call, not the record: streams read messages from the database, so a
 * lost event delays a subscriber until its next check, and never loses a message.
 */
import { Context, Effect, Either, Layer, Metric, PubSub, type Queue, Runtime, Schema, type Scope } from "effect"
import { Cache } from "../cache/Cache.js"
import { Message } from "../../src/domain/Message.js"
import type { CacheUnavailable } from "../../src/errors.js"
import { eventStreamsOpen } from "../../src/telemetry/Metrics.js"
import { sanitizeSample } from "../../src/telemetry/Sanitize.js"

export const SessionEvent = Schema.Union(
  Schema.TaggedStruct("MessagePosted", { tenantId: Schema.String, message: Message }),
  Schema.TaggedStruct("SessionDeleted", { tenantId: Schema.String, sessionId: Schema.String })
)
export type SessionEvent = typeof SessionEvent.Type

const Envelope = Schema.parseJson(Schema.Struct({ origin: Schema.String, event: SessionEvent }))
const encodeEnvelope = Schema.encodeSync(Envelope)
const decodeEnvelope = Schema.decodeUnknownEither(Envelope)

export const CHANNEL = "bulwark:session-events"

/** Events a slow subscriber has not taken yet, at most; older ones are dropped (it catches up). */
const SUBSCRIBER_BUFFER = 1024

export interface EventBusShape {
  /** Delivers in this process at once; fails only if other processes could not be told. */
  readonly publish: (event: SessionEvent) => Effect.Effect<void, CacheUnavailable>
  /** A subscription for the life of the scope; counted in `bulwark_event_streams_open`. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<SessionEvent>, never, Scope.Scope>
}

export class EventBus extends Context.Tag("bulwark/EventBus")<EventBus, EventBusShape>() {
  static readonly layer = Layer.scoped(
    EventBus,
    Effect.gen(function*() {
      const cache = yield* Cache
      const local = yield* PubSub.sliding<SessionEvent>(SUBSCRIBER_BUFFER)
      const origin = crypto.randomUUID()

      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      yield* cache.subscribe(CHANNEL, (text) => {
        const decoded = decodeEnvelope(text)
        if (Either.isLeft(decoded)) {
          // Not ours to act on; streams catch up from the database whatever was meant.
          runFork(Effect.logWarning("an event on the session channel did not decode; ignored").pipe(
            Effect.annotateLogs({ channel: CHANNEL, sample: sanitizeSample(text) })
          ))
        } else if (decoded.right.origin !== origin) {
          // Our own events were delivered in process when they were published.
          local.unsafeOffer(decoded.right.event)
        }
      })

      const publish = (event: SessionEvent) =>
        Effect.zipRight(PubSub.publish(local, event), cache.publish(CHANNEL, encodeEnvelope({ origin, event })))

      const subscribe = Effect.acquireRelease(
        Effect.zipLeft(PubSub.subscribe(local), Metric.increment(eventStreamsOpen)),
        () => Metric.incrementBy(eventStreamsOpen, -1)
      )

      return EventBus.of({ publish, subscribe })
    })
  )
}
