/**
 * Work paced by the event loop: at most `perTurn` waiters go on per turn of the loop, in the order
 * they came. A turn is a macrotask, so between two batches the loop reads its sockets (a microtask
 * would not let it): a burst of arrivals that are each answered at once cannot keep the loop from
 * the connections it already has (README "Fan-out", connection storms).
 */
import { Effect } from "effect"

export interface Pacer {
  /** Calls `go` in its turn; the answer withdraws it if it has not gone yet (a second call does nothing). */
  readonly enqueue: (go: () => void) => () => void
  /** Waits for a turn; interrupted while waiting, it leaves the queue. */
  readonly wait: Effect.Effect<void>
  /** Waiters not gone yet. */
  readonly waiting: () => number
}

export const make = (perTurn: number): Pacer => {
  // A `Set` keeps the arrival order and withdraws in constant time (a storm queues thousands).
  const queue = new Set<() => void>()
  let scheduled = false

  const turn = () => {
    scheduled = false
    // Taken before any goes: one queued by a waiter of this turn waits for the next.
    const now: Array<() => void> = []
    for (const go of queue) {
      if (now.length === perTurn) break
      now.push(go)
    }
    for (const go of now) queue.delete(go)
    for (const go of now) go()
    if (queue.size > 0) schedule()
  }

  const schedule = () => {
    if (scheduled) return
    scheduled = true
    setImmediate(turn)
  }

  const enqueue = (go: () => void) => {
    // Its own function, so that the same `go` queued twice is two waiters.
    const entry = () => go()
    queue.add(entry)
    schedule()
    return () => void queue.delete(entry)
  }

  const wait = Effect.async<void>((resume) => {
    const withdraw = enqueue(() => resume(Effect.void))
    return Effect.sync(withdraw)
  })

  return { enqueue, wait, waiting: () => queue.size }
}
