/**
 * The floor for live fan-out: `Bun.serve` and one `ReadableStream` per subscriber, each message
 * encoded once and enqueued to every stream of its session. No authentication, no database, no
 * catch-up: what the transport alone costs, for `bench/fanout.ts` to compare Bulwark against.
 *
 *   PORT=3001 bun bench/reference/broadcast.ts
 */
const port = Number(process.env["PORT"])
if (!Number.isInteger(port) || port <= 0) {
  console.error("broadcast reference: set PORT")
  process.exit(1)
}

const encoder = new TextEncoder()
const streams = new Map<string, Set<ReadableStreamDefaultController<Uint8Array>>>()
const seqs = new Map<string, number>()
let open = 0

Bun.serve({
  port,
  hostname: "127.0.0.1",
  idleTimeout: 0,
  routes: {
    "/health/ready": () => new Response("ok"),
    "/metrics": () => new Response(`bulwark_event_streams_open ${open}\n`),
    "/v1/sessions": { POST: () => Response.json({ id: crypto.randomUUID() }, { status: 201 }) },
    "/v1/sessions/:id": (request) => Response.json({ id: request.params.id }),
    "/v1/sessions/:id/events": (request) => {
      const session = request.params.id
      let mine: ReadableStreamDefaultController<Uint8Array> | undefined
      const body = new ReadableStream<Uint8Array>({
        start: (controller) => {
          mine = controller
          controller.enqueue(encoder.encode("retry: 1000\n\n"))
          let set = streams.get(session)
          if (set === undefined) streams.set(session, set = new Set())
          set.add(controller)
          open++
        },
        cancel: () => {
          const set = streams.get(session)
          if (set?.delete(mine!) === true) open--
          if (set?.size === 0) streams.delete(session)
        }
      })
      return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } })
    },
    "/v1/sessions/:id/messages": {
      POST: async (request) => {
        const session = request.params.id
        const message = await request.json() as Record<string, unknown>
        const seq = (seqs.get(session) ?? 0) + 1
        seqs.set(session, seq)
        const frame = encoder.encode(`id: ${seq}\nevent: message\ndata: ${JSON.stringify({ ...message, seq, session_id: session })}\n\n`)
        for (const controller of streams.get(session) ?? []) controller.enqueue(frame)
        return Response.json({ seq }, { status: 201 })
      }
    }
  }
})
