/**
 * Server-sent events (SPEC §4): a session's event stream rendered as `text/event-stream`. Each
 * message is one `event: message` whose `id` is its `seq` (what a reconnecting EventSource sends
 * back as `Last-Event-ID`); a failure is one `event: error` with the same `code`, `error_id` and
 * client-safe `detail` a problem body would carry, and it is the stream's last event.
 */
import { HttpServerResponse } from "@effect/platform"
import { Schema, Stream } from "effect"
import type { StreamItem } from "../../services/Events.js"
import { Message } from "../domain/Message.js"
import { clientDetail } from "./Problem.js"

/** Tells EventSource to reconnect after a second (it sends `Last-Event-ID`, so nothing is lost). */
const PREAMBLE = "retry: 1000\n\n"

const encodeMessage = Schema.encodeSync(Message)

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

export const eventStreamResponse = (items: Stream.Stream<StreamItem>): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    Stream.succeed(PREAMBLE).pipe(Stream.concat(Stream.map(items, frameOf)), Stream.encodeText),
    {
      contentType: "text/event-stream",
      // No caching, and no buffering by a proxy in front: each event should reach the client now.
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
    }
  )
