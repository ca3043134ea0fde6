/** The pacer: at most N waiters go on per turn of the event loop, in order; a withdrawn or interrupted one never goes. */
import { expect, test } from "bun:test"
import { Effect, Fiber } from "effect"
import * as Pacer from "../../layers/resilience/Pacer.js"

/** One turn of the real event loop (the pacer moves on `setImmediate`). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

test("goes on at most perTurn per turn of the event loop, in arrival order; nothing goes in the caller's own turn", async () => {
  const pacer = Pacer.make(3)
  const gone: Array<number> = []
  for (let i = 0; i < 8; i++) pacer.enqueue(() => gone.push(i))
  expect(gone).toEqual([])
  expect(pacer.waiting()).toBe(8)
  await turn()
  expect(gone).toEqual([0, 1, 2])
  await turn()
  expect(gone).toEqual([0, 1, 2, 3, 4, 5])
  await turn()
  expect(gone).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
  expect(pacer.waiting()).toBe(0)
})

test("a withdrawn waiter never goes and takes no place in its turn; withdrawing twice or after going does nothing", async () => {
  const pacer = Pacer.make(2)
  const gone: Array<number> = []
  const withdraw = [0, 1, 2, 3].map((i) => pacer.enqueue(() => gone.push(i)))
  withdraw[0]!()
  withdraw[0]!()
  await turn()
  expect(gone).toEqual([1, 2])
  withdraw[1]!()
  await turn()
  expect(gone).toEqual([1, 2, 3])
})

test("one enqueued while a turn runs waits for a later turn", async () => {
  const pacer = Pacer.make(2)
  const gone: Array<string> = []
  pacer.enqueue(() => {
    gone.push("first")
    pacer.enqueue(() => gone.push("queued by first"))
  })
  await turn()
  expect(gone).toEqual(["first"])
  await turn()
  expect(gone).toEqual(["first", "queued by first"])
})

test("wait: resumes in its turn; interrupted while waiting, it leaves the queue", async () => {
  const pacer = Pacer.make(1)
  const gone: Array<number> = []
  const fibers = await Effect.runPromise(Effect.forEach([0, 1, 2], (i) => Effect.forkDaemon(Effect.tap(pacer.wait, () => Effect.sync(() => gone.push(i))))))
  await Effect.runPromise(Effect.yieldNow())
  expect(pacer.waiting()).toBe(3)
  await Effect.runPromise(Fiber.interrupt(fibers[1]!))
  expect(pacer.waiting()).toBe(2)
  await turn()
  await turn()
  await Effect.runPromise(Effect.yieldNow())
  expect(gone).toEqual([0, 2])
  expect(pacer.waiting()).toBe(0)
})
