/**
 * A TCP proxy the test controls, in front of a PostgreSQL (or any TCP server): the server under test
 * connects through it, and the test cuts every connection and refuses new ones (the database is
 * unreachable, as after a crash), or holds every byte in both directions (a database that accepts and
 * never answers, or a partition), then heals. The upstream server itself is untouched.
 */
import type { Socket, TCPSocketListener } from "bun"

export type ProxyMode = "open" | "refusing" | "stalled"

export interface TcpProxy {
  readonly host: string
  readonly port: number
  /** Connections open through the proxy right now. */
  readonly openConnections: () => number
  /** Every connection through the proxy since it started (each side counted once). */
  readonly acceptedConnections: () => number
  /** Closes every connection and refuses new ones (ECONNREFUSED) until `heal`. */
  readonly cut: () => Promise<void>
  /** Accepts connections but holds every byte either way until `heal`, which delivers them in order. */
  readonly stall: () => Promise<void>
  /**
   * The next reply that contains `reply` (e.g. PostgreSQL's command tag, sent once the statement has
   * committed) never arrives: its connection is cut instead, as when a network fails between the
   * server's commit and the client's read. With `request`, only a reply on a connection that sent
   * `request` after this call counts (a client sends a statement's text only the first time on a
   * connection, then runs it prepared, by name). Resolves when that happened.
   */
  readonly loseReply: (markers: { readonly reply: string; readonly request?: string }) => Promise<void>
  /** Accepts and forwards again. */
  readonly heal: () => Promise<void>
  readonly mode: () => ProxyMode
  readonly close: () => Promise<void>
}

interface Pair {
  readonly client: Socket<Link>
  upstream: Socket<Link> | undefined
  /** Client bytes that arrived before the upstream connection was up. */
  readonly early: Array<Uint8Array>
  closed: boolean
}

interface Link {
  pair: Pair
  /** Bytes this socket has not yet taken (it applied backpressure); flushed on drain. */
  pending: Array<Uint8Array>
}

/** Writes what the socket takes now and keeps a copy of the rest for its `drain` (Bun reuses read buffers). */
const send = (socket: Socket<Link>, bytes: Uint8Array): void => {
  const link = socket.data
  if (link.pending.length > 0) {
    link.pending.push(bytes.slice())
    return
  }
  const written = socket.write(bytes)
  if (written < bytes.byteLength) link.pending.push(bytes.slice(Math.max(0, written)))
}

const flush = (socket: Socket<Link>): void => {
  const link = socket.data
  while (link.pending.length > 0) {
    const next = link.pending[0]!
    const written = socket.write(next)
    if (written < next.byteLength) {
      link.pending[0] = next.subarray(Math.max(0, written))
      return
    }
    link.pending.shift()
  }
}

export const startTcpProxy = async (upstream: { readonly host: string; readonly port: number }): Promise<TcpProxy> => {
  const host = "127.0.0.1"
  const pairs = new Set<Pair>()
  let accepted = 0
  let mode: ProxyMode = "open"
  const held: Array<{ readonly pair: Pair; readonly to: () => Socket<Link> | undefined; readonly bytes: Uint8Array }> = []

  /** Forwards now, or holds while stalled (copied: Bun reuses the buffer it hands to `data`). */
  const forward = (pair: Pair, to: () => Socket<Link> | undefined, bytes: Uint8Array) => {
    if (mode === "stalled" || held.length > 0) {
      held.push({ pair, to, bytes: new Uint8Array(bytes) })
      return
    }
    const socket = to()
    if (socket === undefined) pair.early.push(new Uint8Array(bytes))
    else send(socket, bytes)
  }
  const release = () => {
    for (const { pair, to, bytes } of held.splice(0)) {
      if (pair.closed) continue
      const socket = to()
      if (socket === undefined) pair.early.push(bytes)
      else send(socket, bytes)
    }
  }

  const closePair = (pair: Pair) => {
    if (pair.closed) return
    pair.closed = true
    pairs.delete(pair)
    pair.client.terminate()
    pair.upstream?.terminate()
  }

  let losing: { readonly request: Buffer | undefined; readonly reply: Buffer; on: Pair | undefined; readonly lost: () => void } | undefined
  const contains = (bytes: Uint8Array, marker: Buffer) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(marker)
  const watchRequest = (pair: Pair, bytes: Uint8Array) => {
    if (losing?.request !== undefined && losing.on === undefined && contains(bytes, losing.request)) losing.on = pair
  }
  /** True when these upstream bytes are the reply to lose (the connection is then cut, nothing forwarded). */
  const lose = (pair: Pair, bytes: Uint8Array): boolean => {
    if (losing === undefined || (losing.request !== undefined && losing.on !== pair) || !contains(bytes, losing.reply)) return false
    const { lost } = losing
    losing = undefined
    closePair(pair)
    lost()
    return true
  }

  const connectUpstream = async (pair: Pair) => {
    try {
      const socket = await Bun.connect<Link>({
        hostname: upstream.host,
        port: upstream.port,
        data: { pair, pending: [] },
        socket: {
          data: (_socket, bytes) => {
            if (!lose(pair, bytes)) forward(pair, () => pair.client, bytes)
          },
          drain: flush,
          close: () => closePair(pair),
          error: () => closePair(pair)
        }
      })
      if (pair.closed) {
        socket.terminate()
        return
      }
      pair.upstream = socket
      for (const bytes of pair.early.splice(0)) send(socket, bytes)
    } catch {
      // The upstream refused: the client sees its connection closed, as it would without the proxy.
      closePair(pair)
    }
  }

  const listen = (port: number): TCPSocketListener<Link> =>
    Bun.listen<Link>({
      hostname: host,
      port,
      socket: {
        open: (client) => {
          const pair: Pair = { client, upstream: undefined, early: [], closed: false }
          client.data = { pair, pending: [] }
          pairs.add(pair)
          accepted++
          void connectUpstream(pair)
        },
        data: (client, bytes) => {
          const pair = client.data.pair
          watchRequest(pair, bytes)
          forward(pair, () => pair.upstream, bytes)
        },
        drain: flush,
        close: (client) => closePair(client.data.pair),
        error: (client) => closePair(client.data.pair)
      }
    })

  let listener: TCPSocketListener<Link> | undefined = listen(0)
  const port = listener.port

  const stopListening = () => {
    listener?.stop(true)
    listener = undefined
  }
  const cutAll = () => {
    for (const pair of [...pairs]) closePair(pair)
  }

  return {
    host,
    port,
    openConnections: () => pairs.size,
    acceptedConnections: () => accepted,
    mode: () => mode,
    cut: async () => {
      mode = "refusing"
      stopListening()
      cutAll()
      held.length = 0
    },
    loseReply: (markers) =>
      new Promise<void>((lost) => {
        losing = {
          request: markers.request === undefined ? undefined : Buffer.from(markers.request),
          reply: Buffer.from(markers.reply),
          on: undefined,
          lost
        }
      }),
    stall: async () => {
      mode = "stalled"
      listener ??= listen(port)
    },
    heal: async () => {
      mode = "open"
      // The same port again, so the server under test needs no new address.
      listener ??= listen(port)
      release()
    },
    close: async () => {
      stopListening()
      cutAll()
    }
  }
}
