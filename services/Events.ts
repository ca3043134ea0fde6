/**
 * Live session events (SPEC §4). A stream starts after a given `seq` (from `Last-Event-ID` or
 * `?after=`, else after the newest message) and emits every later message exactly once, in `seq`
 * order. The database is the record: an event from the bus is a wake-up call, the next message in
 * order is emitted from it directly, and any gap (an event lost, dropped for a slow subscriber, or
 * never sent because Redis was down) is filled by reading the messages after the last one sent.
 * Every heartbeat also checks the session, so a gap can never outlive one heartbeat interval.
 *
 * A failure mid-stream (the database cannot serve, the session was deleted, a defect) is ledgered
 * with type `stream` and becomes the stream's last item; then the stream ends.
 */
import { Cause, Chunk, Context, type Duration, Effect, Layer, Metric, MetricLabel, Option, Ref, Schedule, Stream } from "effect"
import { EventBus, type SessionEvent } from "../layers/events/EventBus.js"
import type { Message } from "../src/domain/Message.js"
import { type AppError, type CacheUnavailable, Internal } from "../src/errors.js"
import { eventPublishFailuresTotal } from "../src/telemetry/Metrics.js"
import { type ErrorContext, ErrorLedger } from "./ErrorLedger.js"
import { MessagesRepo, toMessage } from "./MessagesRepo.js"
import { sessionNotFound } from "./SessionsRepo.js"

export type StreamItem =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "Ping" }
  | { readonly _tag: "Failed"; readonly error: AppError; readonly errorId: string }

type Signal = { readonly _tag: "CatchUp" } | { readonly _tag: "Heartbeat" } | SessionEvent

/** Messages read per query while catching up; the stream's back-pressure paces the next page. */
const CATCH_UP_PAGE = 200

export const EVENTS_ROUTE = "/v1/sessions/{id}/events"

export interface EventsOptions {
  /** `: ping` this often (SPEC: 15 s); each one also checks the session and fills any gap. */
  readonly heartbeat?: Duration.DurationInput
}

const make = (options: EventsOptions) =>
  Effect.gen(function*() {
    const bus = yield* EventBus
    const repo = yield* MessagesRepo
    const ledger = yield* ErrorLedger
    const heartbeat = options.heartbeat ?? "15 seconds"

    /**
     * The event is delivered in this process whatever happens; when other processes cannot be told,
     * their subscribers catch up at their next heartbeat, and the failure is ledgered (at warning)
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

    /** The session's events after `after`; it runs (and holds a subscription) while it is consumed. */
    const stream = (
      tenantId: string,
      sessionId: string,
      after: number,
      request: Pick<ErrorContext, "requestId" | "traceId" | "userAgent"> = {}
    ): Stream.Stream<StreamItem> =>
      Stream.unwrapScoped(
        Effect.gen(function*() {
          const subscription = yield* bus.subscribe
          const lastSent = yield* Ref.make(after)

          const sent = (message: Message): StreamItem => ({ _tag: "Message", message })
          const markSent = <E>(items: Stream.Stream<StreamItem, E>) =>
            Stream.tap(items, (item) => item._tag === "Message" ? Ref.set(lastSent, item.message.seq) : Effect.void)

          const catchUp = Stream.unwrap(Effect.map(Ref.get(lastSent), (from) =>
            Stream.paginateChunkEffect(from, (cursor) =>
              Effect.map(repo.listAfter(tenantId, sessionId, cursor, CATCH_UP_PAGE), (rows) => {
                const last = rows[rows.length - 1]
                return [
                  Chunk.fromIterable(rows.map((row) => sent(toMessage(row)))),
                  rows.length === CATCH_UP_PAGE && last !== undefined ? Option.some(last.seq) : Option.none()
                ] as const
              }))
          )).pipe(markSent)

          const handle = (signal: Signal) => {
            switch (signal._tag) {
              case "CatchUp":
                return catchUp
              case "Heartbeat":
                return Stream.succeed<StreamItem>({ _tag: "Ping" }).pipe(
                  Stream.concat(Stream.unwrap(Effect.zipWith(
                    newestSeq(tenantId, sessionId),
                    Ref.get(lastSent),
                    (newest, last) => newest > last ? catchUp : Stream.empty
                  )))
                )
              case "MessagePosted":
                return Stream.unwrap(Effect.map(Ref.get(lastSent), (last) => {
                  const seq = signal.message.seq
                  if (seq <= last) return Stream.empty
                  return seq === last + 1 ? Stream.make(sent(signal.message)).pipe(markSent) : catchUp
                }))
              case "SessionDeleted":
                return Stream.fail(sessionNotFound(sessionId))
            }
          }

          const ours = (event: SessionEvent) =>
            event.tenantId === tenantId && (event._tag === "MessagePosted" ? event.message.session_id : event.sessionId) === sessionId

          const signals = Stream.merge(
            Stream.fromQueue(subscription).pipe(Stream.filter(ours)),
            Stream.fromSchedule(Schedule.spaced(heartbeat)).pipe(Stream.as<Signal>({ _tag: "Heartbeat" }))
          )

          const failed = (error: AppError) =>
            Stream.fromEffect(Effect.map(
              ledger.record(error, { ...request, type: "stream", tenantId, sessionId, method: "GET", route: EVENTS_ROUTE }),
              (errorId): StreamItem => ({ _tag: "Failed", error, errorId })
            ))

          // The subscription is taken before the first read, so nothing posted in between is missed.
          return Stream.succeed<Signal>({ _tag: "CatchUp" }).pipe(
            Stream.concat(signals),
            Stream.flatMap(handle),
            Stream.catchAllCause((cause) =>
              // Interrupted: the client is gone, and nobody is left to tell.
              Cause.isInterruptedOnly(cause)
                ? Stream.empty
                : failed(Option.getOrElse(
                  Cause.failureOption(cause),
                  () => new Internal({ reason: "an event stream died", cause: Cause.squash(cause) })
                ))
            ),
            Stream.takeUntil((item) => item._tag === "Failed")
          )
        })
      )

    return { messagePosted, sessionDeleted, newestSeq, stream } as const
  })

export class Events extends Context.Tag("bulwark/Events")<Events, Effect.Effect.Success<ReturnType<typeof make>>>() {
  static readonly layer = (options: EventsOptions = {}) => Layer.effect(Events, make(options))
}
