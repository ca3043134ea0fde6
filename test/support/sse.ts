/**
 * A server-sent events client over `fetch` streaming, as an agent would use one: it parses the
 * stream into events (and comments, so heartbeats can be seen) and can be closed at any time.
 */
import { checkResponse } from "./contract.js"

export interface SseEvent {
  readonly id?: string
  readonly event: string
  readonly data: string
}

/** An event, or a comment line such as `: ping`. */
export type SseItem = SseEvent | { readonly comment: string }

export interface SseClient {
  readonly response: Response
  /** The next event or comment; fails if none comes within `millis`, or the stream ended. */
  readonly next: (millis?: number) => Promise<SseItem>
  /** The next event that is not a comment (skipping pings). */
  readonly nextEvent: (millis?: number) => Promise<SseEvent>
  /** Resolves when the server ends the stream (no more items), fails after `millis`. */
  readonly ended: (millis?: number) => Promise<void>
  readonly close: () => void
}

export const openEvents = async (url: string, init: RequestInit = {}): Promise<SseClient> => {
  const abort = new AbortController()
  // Checked against /openapi.json like every harness response (an event stream by status and headers).
  const response = await checkResponse(new URL(url).origin, init.method ?? "GET", url, await fetch(url, { ...init, signal: abort.signal }))
  const items: Array<SseItem> = []
  const waiters: Array<() => void> = []
  let done = false
  const wake = () => waiters.splice(0).forEach((resolve) => resolve())

  const parse = (block: string) => {
    const fields: { id?: string; event?: string; data: Array<string> } = { data: [] }
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) {
        items.push({ comment: line.slice(1).trim() })
        continue
      }
      const colon = line.indexOf(":")
      const name = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
      if (name === "id") fields.id = value
      else if (name === "event") fields.event = value
      else if (name === "data") fields.data.push(value)
    }
    if (fields.data.length > 0 || fields.event !== undefined) {
      items.push({ ...(fields.id === undefined ? {} : { id: fields.id }), event: fields.event ?? "message", data: fields.data.join("\n") })
    }
  }

  if (response.ok && response.body !== null) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
    void (async () => {
      let buffer = ""
      try {
        for (;;) {
          const chunk = await reader.read()
          if (chunk.done) break
          buffer += chunk.value
          let cut: number
          while ((cut = buffer.indexOf("\n\n")) !== -1) {
            parse(buffer.slice(0, cut))
            buffer = buffer.slice(cut + 2)
          }
          wake()
        }
      } catch {
        // Aborted by close(), or the connection dropped: either way the stream is over.
      }
      done = true
      wake()
    })()
  }

  const next = async (millis = 2000): Promise<SseItem> => {
    const deadline = Date.now() + millis
    for (;;) {
      const item = items.shift()
      if (item !== undefined) return item
      if (done) throw new Error("the event stream ended")
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no event within ${millis} ms`)
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, left)
      })
    }
  }

  const nextEvent = async (millis = 2000): Promise<SseEvent> => {
    const deadline = Date.now() + millis
    for (;;) {
      const item = await next(Math.max(1, deadline - Date.now()))
      if (!("comment" in item)) return item
    }
  }

  const ended = async (millis = 2000) => {
    const deadline = Date.now() + millis
    while (!done) {
      if (Date.now() > deadline) throw new Error(`the stream did not end within ${millis} ms`)
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, 20)
      })
    }
    if (items.some((item) => !("comment" in item))) throw new Error(`events remained unread: ${JSON.stringify(items)}`)
  }

  return { response, next, nextEvent, ended, close: () => abort.abort() }
}
