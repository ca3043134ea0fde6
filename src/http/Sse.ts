/**
 * Server-sent events (SPEC §4): a session's event stream rendered as `text/event-stream`. Each
 * message is one `event: message` whose `id` is its `seq` (what a reconnecting EventSource sends
 * back as `Last-Event-ID`); a failure is one `event: error` with the same `code`, `error_id` and
 * client-safe `detail` a problem body would carry, and it is the stream's last event.
 *
 * The body is a plain `ReadableStream` written by the session's topic, not an Effect stream with a
 * fiber per client: a message shared by a thousand streams is encoded once, and an open stream
 * costs its connection and a few small objects.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as BunHttpServerRequest from "@effect/platform-bun/BunHttpServerRequest"
import { Effect, Schema } from "effect"
import type { StreamItem, StreamSink, StreamSlot, Subscription } from "../../services/Events.js"
import { Message } from "../domain/Message.js"
import { clientDetail } from "./Problem.js"

/** Tells EventSource to reconnect after a second (it sends `Last-Event-ID`, so nothing is lost). */
const PREAMBLE = "retry: 1000\n\n"

/** Bytes a client may leave unread before its stream stops taking messages (it resumes from the database). */
const UNREAD_LIMIT = 256 * 1024

const encodeMessage = Schema.encodeSync(Message)
const encoder = new TextEncoder()

export const frameOf = (item: StreamItem): string => {
  switch (item._tag) {
    case "Message":
      return `id: ${item.message.seq}\nevent: message\ndata: ${JSON.stringify(encodeMessage(item.message))}\n\n`
    case "Ping":
      return ": ping\n\n"
    case "Failed":
      return `event: error\ndata: ${
        JSON.stringify({ code: item.error.code, error_id: item.errorId, detail: clientDetail(item.error) })
      }\n\n`
  }
}

const PREAMBLE_BYTES = encoder.encode(PREAMBLE)
const PING_BYTES = encoder.encode(frameOf({ _tag: "Ping" }))

/** Frames of items that many streams share (a session's messages), encoded once while any holds them. */
const frames = new WeakMap<StreamItem, Uint8Array>()

const bytesOf = (item: StreamItem): Uint8Array => {
  if (item._tag === "Ping") return PING_BYTES
  let bytes = frames.get(item)
  if (bytes === undefined) {
    bytes = encoder.encode(frameOf(item))
    if (item._tag === "Message") frames.set(item, bytes)
  }
  return bytes
}

/**
 * Bun closes a connection that sends nothing for its idle timeout (10 s by default), shorter than
 * the heartbeat (15 s): a stream's connection is exempt. The platform keeps the Bun server on its
 * request object without exporting it, hence the narrow cast; the SSE tests fail if it is ever gone.
 */
const exemptFromIdleTimeout = (request: HttpServerRequest.HttpServerRequest) => {
  const server = (request as unknown as { readonly bunServer?: { readonly timeout: (request: Request, seconds: number) => void } }).bunServer
  server?.timeout(BunHttpServerRequest.toRequest(request), 0)
}

/**
 * The response for a stream that `open` starts once the client reads the body (never for a
 * response that is not sent, or a HEAD). The stream ends when the client leaves (`cancel`); its
 * `slot` is given back however it ends, and at once for a HEAD, whose body is never read.
 */
export const eventStreamResponse = (open: (sink: StreamSink) => Effect.Effect<Subscription>, slot: StreamSlot) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    if (request.method === "HEAD") slot.release()
    exemptFromIdleTimeout(request)
    let subscription: Subscription | undefined
    let ended = false
    const stop = () => {
      ended = true
      slot.release()
      subscription?.cancel()
    }
    const body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          controller.enqueue(PREAMBLE_BYTES)
        },
        // The first pull is the first read: only then is the subscription taken.
        pull: (controller) => {
          if (subscription === undefined) {
            // Not the request's runtime: the stream would keep its context, span and fiber refs alive.
            subscription = Effect.runSync(open(sinkOf(controller)))
          } else {
            subscription.resume()
          }
        },
        cancel: stop
      },
      // Pulled only when a read waits on an empty queue: the reader has room.
      { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 }
    )

    const sinkOf = (controller: ReadableStreamDefaultController<Uint8Array>): StreamSink => ({
      write: (item) => {
        if (ended) return false
        try {
          controller.enqueue(bytesOf(item))
        } catch {
          // The body was closed under us (the client is gone): the stream is released like a cancel.
          stop()
          return false
        }
        return (controller.desiredSize ?? 0) > -UNREAD_LIMIT
      },
      end: () => {
        if (ended) return
        ended = true
        slot.release()
        controller.close()
      }
    })

    return HttpServerResponse.raw(body, {
      contentType: "text/event-stream",
      // No buffering by a proxy in front: each event should reach the client now. (Caching: the
      // edge makes every answer to a request with credentials `private, no-store`.)
      headers: { "x-accel-buffering": "no" }
    })
  })
