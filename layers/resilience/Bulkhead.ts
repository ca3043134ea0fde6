/**
 * A bulkhead (SPEC §5): at most `maxConcurrent` calls run at once and at most `maxQueued` wait;
 * past that a call fails at once with the given error (503 `OVERLOADED`) instead of queueing
 * without bound.
 */
import { Effect, Ref } from "effect"

export interface BulkheadOptions<E> {
  readonly maxConcurrent: number
  readonly maxQueued: number
  readonly full: () => E
}

export const make = <E>(options: BulkheadOptions<E>) =>
  Effect.gen(function*() {
    const semaphore = yield* Effect.makeSemaphore(options.maxConcurrent)
    // Calls admitted (running or waiting); admission is atomic, so the bound holds under any interleaving.
    const admitted = yield* Ref.make(0)
    const capacity = options.maxConcurrent + options.maxQueued

    const run = <A, E2, R>(effect: Effect.Effect<A, E2, R>): Effect.Effect<A, E | E2, R> =>
      Effect.flatMap(
        Ref.modify(admitted, (n) => (n >= capacity ? [false, n] as const : [true, n + 1] as const)),
        (ok): Effect.Effect<A, E | E2, R> =>
          ok
            ? semaphore.withPermits(1)(effect).pipe(Effect.ensuring(Ref.update(admitted, (n) => n - 1)))
            : Effect.fail(options.full())
      )

    const inFlight = Ref.get(admitted)
    return { run, inFlight } as const
  })

export type Bulkhead<E> = Effect.Effect.Success<ReturnType<typeof make<E>>>
