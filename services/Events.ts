/**
 * Live session events (SPEC §4, §8). A stream starts after a given `seq` (from `Last-Event-ID` or
 * `?after=`, else after the newest message) and emits every later message exactly once, in `seq`
 * order.
 *
 * The database is the truth and the bus a hint. The process keeps one listener on the bus and a
 * registry of the sessions that have open streams here (a topic each). A topic knows the newest
 * `seq` it has seen and keeps the last few messages, contiguous, that its streams share: an event
 * that follows on is appended and handed to every stream of its session; an event that skips
 * ahead, or a check that finds the database ahead, starts one catch-up read for the whole topic.
 * A stream behind what its topic keeps (a resume from an old `Last-Event-ID`, a slow client) reads
 * its own pages until it reaches the shared ones.
 *
 * Sessions are checked against the database in one batched read per interval, not per stream:
 * every heartbeat (SPEC: 15 s, with the `: ping`), and every second while the bus is unwell (its
 * own probe does not come back), so a lost event delays a stream by at most that long.
 *
 * A failure mid-stream (the database cannot serve, the session was deleted, a defect) is ledgered
 * with type `stream` and becomes the stream's last item; then the stream ends.
 */
import { Cause, Context, Duration, Effect, Layer, Metric, MetricLabel, Option, Queue, Runtime, Schedule, type Scope, Stream } from "effect"
import * as AfterBurst from "../layers/resilience/AfterBurst.js"
import * as Pacer from "../layers/resilience/Pacer.js"
import * as Supervised from "../layers/resilience/Supervised.js"
import { EventBus, type SessionEvent } from "../layers/events/EventBus.js"
import type { Message } from "../src/domain/Message.js"
import { type AppError, type CacheUnavailable, type DbOperational, Internal, type NotFound, Overloaded, RateLimited } from "../src/errors.js"
import { eventPublishFailuresTotal, eventStreamCap, eventStreamsOpen } from "../src/telemetry/Metrics.js"
import { type ErrorContext, ErrorLedger } from "./ErrorLedger.js"
import { MessagesRepo, toMessage } from "./MessagesRepo.js"
import { sessionNotFound } from "./SessionsRepo.js"

export type MessageItem = { readonly _tag: "Message"; readonly message: Message }

export type StreamItem =
  | MessageItem
  | { readonly _tag: "Ping" }
  | { readonly _tag: "Failed"; readonly error: AppError; readonly errorId: string }

/** Where a stream's items go: written in order, one at a time, from the process's own code. */
export interface StreamSink {
  /** Takes the item; answers whether it has room for more now (if not, wait for `resume`). */
  readonly write: (item: StreamItem) => boolean
  /** No item follows. */
  readonly end: () => void
}

export interface Subscription {
  /** The sink has room again. */
  readonly resume: () => void
  /** The reader is gone: stop, and release what the stream held. */
  readonly cancel: () => void
}

export type StreamRequest = Pick<ErrorContext, "requestId" | "traceId" | "userAgent">

/** Messages read per query while catching up; a stream's back-pressure paces the next page. */
const CATCH_UP_PAGE = 200

/** Messages each topic keeps for its streams, and their content at most (a message may be 64 KiB); a stream further behind reads its own pages. */
const SHARED_MESSAGES = 64
const SHARED_CONTENT_CHARS = 256 * 1024

/** Sessions per batched check read. */
const CHECK_BATCH = 500

/**
 * Streams closed since the last full collection that make one worth its pause. Measured: after 10,000
 * closed it paused the loop 165-290 ms and handed back 210-270 MB; after 1,000, 65-120 ms for 13-16 MB.
 */
const MASS_CLOSE = 5000
/** The full collection waits until no stream has closed for this long. */
const COLLECT_AFTER_QUIET = "1 second"

/** Items an Effect `stream` buffers for its consumer before it stops taking more. */
const STREAM_ROOM = 256

export const EVENTS_ROUTE = "/v1/sessions/{id}/events"

/** Caps on open event streams (SPEC §1: `BULWARK_MAX_STREAMS_PER_KEY` / `BULWARK_MAX_STREAMS`). */
export interface StreamCaps {
  readonly perKey: number
  readonly total: number
}

export const defaultStreamCaps: StreamCaps = { perKey: 100, total: 10_000 }

/** A stream ends when a client leaves; a second is long enough for one to have gone. */
const CAPPED_RETRY_AFTER_SECONDS = 1

/**
 * Stream opens admitted per turn of the event loop. Opening runs on the loop (authentication, the
 * session read); a storm of them, each answered at once, kept Bun accepting new connections without
 * returning to the sockets it already had, so requests on kept-alive connections waited until the
 * storm was over. Waiting for a later turn lets those sockets be read between batches.
 */
const ADMITTED_PER_TURN = 16

export interface EventsOptions {
  /** `: ping` this often (SPEC: 15 s); each one also checks the sessions and fills any gap. */
  readonly heartbeat?: Duration.DurationInput
  /** How often sessions are checked while the bus is unwell (SPEC §8: at least every second). */
  readonly unwellCheckEvery?: Duration.DurationInput
  readonly caps?: StreamCaps
}

/** The options of `Events`; none given is the contract's defaults. */
export class EventsConfig extends Context.Reference<EventsConfig>()("bulwark/EventsConfig", {
  defaultValue: (): EventsOptions => ({})
}) {}

/** A stream's place under the caps, taken by `admit`; `release` gives it back (once, however often it is called). */
export interface StreamSlot {
  readonly release: () => void
}

/** Open streams against their caps, as `/health` details show them. */
export interface StreamCounts {
  readonly open: number
  readonly perKeyCap: number
  readonly processCap: number
}

export interface EventsShape {
  /** Announces a stored message to its session's streams, here and (through the bus) elsewhere; never fails. */
  readonly messagePosted: (tenantId: string, message: Message) => Effect.Effect<void>
  /** Ends the session's streams, here and elsewhere; never fails. */
  readonly sessionDeleted: (tenantId: string, sessionId: string) => Effect.Effect<void>
  /** Where a stream without a given start begins: after the newest message. Fails 404 without a session. */
  readonly newestSeq: (tenantId: string, sessionId: string) => Effect.Effect<number, DbOperational | NotFound>
  /**
   * A place for one more stream of `keyId`: 429 `RATE_LIMITED` past the key's cap, 503 `OVERLOADED`
   * past the process's, at once; else it waits its turn among the streams opening now. Whoever takes
   * it releases it when the stream ends (or does not start).
   */
  readonly admit: (keyId: string) => Effect.Effect<StreamSlot, RateLimited | Overloaded>
  /**
   * Opens a stream into `sink` after `after`. The sink is written from this process's own code
   * (never concurrently), and must not throw.
   */
  readonly open: (tenantId: string, sessionId: string, after: number, request: StreamRequest, sink: StreamSink) => Effect.Effect<Subscription>
  /** The session's events after `after` as a `Stream`; it holds its subscription while it is consumed. */
  readonly stream: (tenantId: string, sessionId: string, after: number, request?: StreamRequest) => Stream.Stream<StreamItem>
  /** Open streams and the sessions they watch in this process (what the tests check is released). */
  readonly registrySize: Effect.Effect<{ readonly sessions: number; readonly streams: number }>
  readonly streamCounts: Effect.Effect<StreamCounts>
}

interface Topic {
  readonly key: string
  readonly tenantId: string
  readonly sessionId: string
  readonly subscribers: Set<Subscriber>
  /** The newest `seq` known to be committed (-1 until first read); `recent` ends there, contiguous. */
  known: number
  recent: Array<MessageItem>
  /** Characters of content in `recent`. */
  recentChars: number
  reading: boolean
  readAgain: boolean
}

interface Subscriber {
  readonly topic: Topic
  readonly sink: StreamSink
  readonly request: StreamRequest
  lastSent: number
  /** The sink is full: nothing is written until it resumes. */
  waiting: boolean
  /** A read of its own is in flight. */
  reading: boolean
  pumping: boolean
  done: boolean
}

const PING: StreamItem = { _tag: "Ping" }

const topicKey = (tenantId: string, sessionId: string) => `${tenantId}/${sessionId}`

const make: Effect.Effect<EventsShape, never, EventBus | MessagesRepo | ErrorLedger | Scope.Scope> = Effect.gen(function*() {
  const options = yield* EventsConfig
  const caps = options.caps ?? defaultStreamCaps
  const bus = yield* EventBus
  const repo = yield* MessagesRepo
  const ledger = yield* ErrorLedger
  const heartbeat = options.heartbeat ?? "15 seconds"
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const topics = new Map<string, Topic>()

  /**
   * The event is delivered in this process whatever happens; when other processes cannot be told,
   * their subscribers catch up at their next check, and the failure is ledgered (at warning)
   * and counted. An open breaker's fast rejections are counted, not ledgered one by one: the
   * transition that opened it was.
   */
  const publish = (event: SessionEvent, sessionId: string) =>
    bus.publish(event).pipe(
      Effect.catchAll((error: CacheUnavailable) =>
        Effect.zipRight(
          Metric.increment(Metric.taggedWithLabels(eventPublishFailuresTotal, [MetricLabel.make("reason", error.reason)])),
          error.reason === "breaker_open"
            ? Effect.void
            : Effect.asVoid(ledger.record(error, { severity: "warning", tenantId: event.tenantId, sessionId }))
        )
      )
    )

  const messagePosted = (tenantId: string, message: Message) =>
    publish({ _tag: "MessagePosted", tenantId, message }, message.session_id)

  const sessionDeleted = (tenantId: string, sessionId: string) => publish({ _tag: "SessionDeleted", tenantId, sessionId }, sessionId)

  /** Where a stream without a given start begins: after the newest message. Fails 404 without a session. */
  const newestSeq = (tenantId: string, sessionId: string) =>
    Effect.flatMap(repo.lastSeq(tenantId, sessionId), Option.match({
      onNone: () => Effect.fail(sessionNotFound(sessionId)),
      onSome: Effect.succeed
    }))

  /** A failure, a defect as `Internal`; `None` for an interruption (nobody is left to tell). */
  const errorOf = (cause: Cause.Cause<AppError>): Option.Option<AppError> =>
    Cause.isInterruptedOnly(cause)
      ? Option.none()
      : Option.some(Option.getOrElse(
        Cause.failureOption(cause),
        () => new Internal({ reason: "an event stream died", cause: Cause.squash(cause) })
      ))

  /** Runs a read off the caller's stack; `onError` gets its failure or defect. */
  const run = <A>(read: Effect.Effect<A, AppError>, onSuccess: (a: A) => void, onError: (error: AppError) => void) =>
    runFork(Effect.matchCause(read, {
      onSuccess,
      onFailure: (cause) => Option.match(errorOf(cause), { onNone: () => {}, onSome: onError })
    }))

  // ---- the registry: topics and their subscribers, all plain state touched by one thread ----

  const release = (subscriber: Subscriber) => {
    if (subscriber.done) return false
    subscriber.done = true
    const topic = subscriber.topic
    topic.subscribers.delete(subscriber)
    // The last stream of a session takes its topic (and the messages it kept) with it.
    if (topic.subscribers.size === 0 && topics.get(topic.key) === topic) topics.delete(topic.key)
    eventStreamsOpen.unsafeModify(-1, [])
    massClose.record()
    return true
  }

  // After a mass close the engine collects the garbage only when it next decides to, and the process
  // holds hundreds of megabytes meanwhile: a full collection once the closing is over hands them back.
  const massClose = yield* AfterBurst.make({
    threshold: MASS_CLOSE,
    quiet: COLLECT_AFTER_QUIET,
    run: AfterBurst.fullCollection("after a mass close of event streams")
  })

  const fail = (subscriber: Subscriber, error: AppError) => {
    if (!release(subscriber)) return
    const { sessionId, tenantId } = subscriber.topic
    runFork(Effect.map(
      ledger.record(error, { ...subscriber.request, type: "stream", tenantId, sessionId, method: "GET", route: EVENTS_ROUTE }),
      (errorId) => {
        subscriber.sink.write({ _tag: "Failed", error, errorId })
        subscriber.sink.end()
      }
    ))
  }

  const failTopic = (topic: Topic, error: AppError) => {
    for (const subscriber of [...topic.subscribers]) fail(subscriber, error)
  }

  /** Writes what the topic has after the subscriber's last `seq`, or reads its own page if it is further behind. */
  const pump = (subscriber: Subscriber): void => {
    if (subscriber.done || subscriber.waiting || subscriber.reading || subscriber.pumping) return
    const topic = subscriber.topic
    if (topic.known < 0) return
    const first = topic.recent[0]?.message.seq ?? topic.known + 1
    if (subscriber.lastSent < first - 1) return readOwn(subscriber)
    subscriber.pumping = true
    try {
      for (let i = subscriber.lastSent + 1 - first; i < topic.recent.length; i++) {
        const item = topic.recent[i]!
        subscriber.lastSent = item.message.seq
        if (!subscriber.sink.write(item)) {
          subscriber.waiting = true
          break
        }
      }
    } finally {
      subscriber.pumping = false
    }
  }

  const pumpAll = (topic: Topic) => {
    for (const subscriber of topic.subscribers) pump(subscriber)
  }

  const readOwn = (subscriber: Subscriber) => {
    subscriber.reading = true
    const { sessionId, tenantId } = subscriber.topic
    run(repo.listAfter(tenantId, sessionId, subscriber.lastSent, CATCH_UP_PAGE), (rows) => {
      subscriber.reading = false
      if (subscriber.done) return
      let room = true
      for (const row of rows) {
        if (row.seq <= subscriber.lastSent) continue
        subscriber.lastSent = row.seq
        room = subscriber.sink.write({ _tag: "Message", message: toMessage(row) })
      }
      subscriber.waiting = !room
      // Nothing after it: the session lost its messages (deleted); the next check ends the stream.
      if (rows.length > 0) pump(subscriber)
    }, (error) => fail(subscriber, error))
  }

  /** Appends a message that follows on; one that skips ahead starts a catch-up read. */
  const accept = (topic: Topic, item: MessageItem) => {
    const seq = item.message.seq
    if (topic.known < 0 || seq <= topic.known) return
    if (seq > topic.known + 1) return catchUp(topic)
    topic.known = seq
    topic.recent.push(item)
    topic.recentChars += item.message.content.length
    while (topic.recent.length > 1 && (topic.recent.length > SHARED_MESSAGES || topic.recentChars > SHARED_CONTENT_CHARS)) {
      topic.recentChars -= topic.recent.shift()!.message.content.length
    }
  }

  /** One read at a time per topic, shared by all its streams; asked again meanwhile, it reads once more. */
  const catchUp = (topic: Topic) => {
    if (topic.reading) {
      topic.readAgain = true
      return
    }
    topic.reading = true
    topic.readAgain = false
    run(repo.listAfter(topic.tenantId, topic.sessionId, topic.known, CATCH_UP_PAGE), (rows) => {
      topic.reading = false
      for (const row of rows) accept(topic, { _tag: "Message", message: toMessage(row) })
      pumpAll(topic)
      if (rows.length === CATCH_UP_PAGE || topic.readAgain) catchUp(topic)
    }, (error) => {
      topic.reading = false
      failTopic(topic, error)
    })
  }

  /** What a check found: the session gone, first known, or ahead of the topic. */
  const observe = (topic: Topic, newest: Option.Option<number>) => {
    if (Option.isNone(newest)) return failTopic(topic, sessionNotFound(topic.sessionId))
    if (topic.known < 0) {
      topic.known = newest.value
      pumpAll(topic)
      if (topic.readAgain) catchUp(topic)
    } else if (newest.value > topic.known) {
      catchUp(topic)
    }
  }

  const checkOne = (topic: Topic) =>
    run(repo.lastSeq(topic.tenantId, topic.sessionId), (newest) => observe(topic, newest), (error) => failTopic(topic, error))

  /** Every topic against the database, in batched reads. */
  const checkAll = Effect.suspend(() => {
    const batches: Array<Array<Topic>> = []
    for (const topic of topics.values()) {
      const batch = batches[batches.length - 1]
      if (batch === undefined || batch.length === CHECK_BATCH) batches.push([topic])
      else batch.push(topic)
    }
    return Effect.forEach(batches, (batch) =>
      Effect.matchCause(repo.lastSeqs(batch.map((topic) => topic.sessionId)), {
        onSuccess: (rows) => {
          const newest = new Map(rows.map((row) => [topicKey(row.tenantId, row.sessionId), row.lastSeq]))
          for (const topic of batch) observe(topic, Option.fromNullable(newest.get(topic.key)))
        },
        onFailure: (cause) =>
          Option.match(errorOf(cause), { onNone: () => {}, onSome: (error) => batch.forEach((topic) => failTopic(topic, error)) })
      }), { discard: true })
  })

  const onEvent = (event: SessionEvent) => {
    if (event._tag === "MessagePosted") {
      const topic = topics.get(topicKey(event.tenantId, event.message.session_id))
      if (topic === undefined) return
      if (topic.known < 0) {
        // Its first read is in flight; it reads again once it knows where it stands.
        topic.readAgain = true
        return
      }
      accept(topic, { _tag: "Message", message: event.message })
      pumpAll(topic)
    } else {
      const topic = topics.get(topicKey(event.tenantId, event.sessionId))
      if (topic !== undefined) failTopic(topic, sessionNotFound(event.sessionId))
    }
  }

  const onHealth = (healthy: boolean) =>
    runFork(
      healthy
        // Whatever was published while it was unwell may be lost: every session reads again.
        ? Effect.zipRight(Effect.logInfo("session event bus is well again; checking every open session"), checkAll)
        : Effect.logWarning("session event bus is unwell; open sessions are checked against the database every second")
    )

  yield* bus.listen({ event: onEvent, health: onHealth })

  /**
   * Opens a stream into `sink` after `after`. The sink is written from this process's own code
   * (never concurrently), and must not throw.
   */
  const open = (tenantId: string, sessionId: string, after: number, request: StreamRequest, sink: StreamSink) =>
    Effect.sync((): Subscription => {
      const key = topicKey(tenantId, sessionId)
      let topic = topics.get(key)
      const isNew = topic === undefined
      if (topic === undefined) {
        topic = { key, tenantId, sessionId, subscribers: new Set(), known: -1, recent: [], recentChars: 0, reading: false, readAgain: false }
        topics.set(key, topic)
      }
      const subscriber: Subscriber = {
        topic,
        sink,
        request,
        lastSent: after,
        waiting: false,
        reading: false,
        pumping: false,
        done: false
      }
      topic.subscribers.add(subscriber)
      eventStreamsOpen.unsafeModify(1, [])
      if (isNew) checkOne(topic)
      // It was told of a newer message than its topic has seen: an event is late or lost.
      else if (topic.known >= 0 && after > topic.known) catchUp(topic)
      else pump(subscriber)
      return {
        resume: () => {
          subscriber.waiting = false
          pump(subscriber)
        },
        cancel: () => void release(subscriber)
      }
    })

  /** The session's events after `after` as a `Stream`; it holds its subscription while it is consumed. */
  const stream = (tenantId: string, sessionId: string, after: number, request: StreamRequest = {}): Stream.Stream<StreamItem> =>
    Stream.unwrapScoped(
      Effect.gen(function*() {
        const queue = yield* Queue.unbounded<StreamItem | null>()
        let paused = false
        const size = () => Option.getOrElse(queue.unsafeSize(), () => 0)
        const sink: StreamSink = {
          write: (item) => {
            queue.unsafeOffer(item)
            paused = size() >= STREAM_ROOM
            return !paused
          },
          end: () => void queue.unsafeOffer(null)
        }
        const subscription = yield* Effect.acquireRelease(
          open(tenantId, sessionId, after, request, sink),
          (subscription) => Effect.sync(subscription.cancel)
        )
        return Stream.repeatEffectOption(Effect.flatMap(Queue.take(queue), (item) => {
          if (paused && size() < STREAM_ROOM / 2) {
            paused = false
            subscription.resume()
          }
          return item === null ? Effect.fail(Option.none()) : Effect.succeed(item)
        }))
      })
    )

  const pingAll = Effect.sync(() => {
    for (const topic of topics.values()) {
      for (const subscriber of topic.subscribers) {
        // A client that has not read what it has is not pinged: it is not idle.
        if (!subscriber.done && !subscriber.waiting && !subscriber.sink.write(PING)) subscriber.waiting = true
      }
    }
  })

  /** A background loop whose round never ends it: a defect is logged with its cause and the next round runs. */
  const everyRound = (name: string, every: Duration.DurationInput, round: Effect.Effect<unknown>) =>
    round.pipe(
      Effect.catchAllCause((cause) => Effect.logError(`event streams: ${name} failed; next round as usual`, cause)),
      Effect.repeat(Schedule.spaced(every)),
      Effect.delay(every),
      Supervised.loop(`events-${name}`),
      Effect.forkScoped
    )

  yield* everyRound("heartbeat", heartbeat, Effect.zipRight(pingAll, checkAll))
  yield* everyRound(
    "check while the bus is unwell",
    options.unwellCheckEvery ?? "1 second",
    Effect.whenEffect(checkAll, Effect.map(bus.healthy, (healthy) => !healthy))
  )

  const registrySize = Effect.sync(() => {
    let streams = 0
    for (const topic of topics.values()) streams += topic.subscribers.size
    return { sessions: topics.size, streams }
  })

  // ---- caps and admission: plain counters and a queue, touched by one thread ----

  yield* Metric.set(Metric.tagged(eventStreamCap, "scope", "key"), caps.perKey)
  yield* Metric.set(Metric.tagged(eventStreamCap, "scope", "process"), caps.total)
  const slotsByKey = new Map<string, number>()
  let slotsTaken = 0

  const take = (keyId: string): StreamSlot | RateLimited | Overloaded => {
    const ofKey = slotsByKey.get(keyId) ?? 0
    if (ofKey >= caps.perKey) return new RateLimited({ retryAfterSeconds: CAPPED_RETRY_AFTER_SECONDS })
    if (slotsTaken >= caps.total) return new Overloaded({ resource: "event streams", retryAfterSeconds: CAPPED_RETRY_AFTER_SECONDS })
    slotsByKey.set(keyId, ofKey + 1)
    slotsTaken += 1
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        slotsTaken -= 1
        const left = (slotsByKey.get(keyId) ?? 1) - 1
        if (left === 0) slotsByKey.delete(keyId)
        else slotsByKey.set(keyId, left)
      }
    }
  }

  const opens = Pacer.make(ADMITTED_PER_TURN)

  const admit = (keyId: string) =>
    Effect.suspend(() => {
      const slot = take(keyId)
      if (slot instanceof RateLimited || slot instanceof Overloaded) return Effect.fail(slot)
      return Effect.as(Effect.onInterrupt(opens.wait, () => Effect.sync(slot.release)), slot)
    })

  const streamCounts = Effect.sync((): StreamCounts => ({ open: slotsTaken, perKeyCap: caps.perKey, processCap: caps.total }))

  return { messagePosted, sessionDeleted, newestSeq, admit, open, stream, registrySize, streamCounts }
})

export class Events extends Effect.Service<Events>()("bulwark/Events", { scoped: make }) {
  /** With options other than the contract's defaults (tests shorten the heartbeat, set small caps). */
  static readonly layer = (options: EventsOptions = {}) => Layer.provide(Events.Default, Layer.succeed(EventsConfig, options))
}
