import { Clock, Effect } from "effect"

/** RFC 3339 UTC with milliseconds, from Effect's `Clock` so tests can drive it with `TestClock`. */
export const nowIso = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis).toISOString())

/**
 * A new id: a UUID v7 (RFC 9562), time-ordered, so each table's id index is appended to at its end
 * instead of dirtying a random page per row. Bun's generator is monotonic within the process.
 */
export const newIdSync = (): string => Bun.randomUUIDv7()

export const newId = Effect.sync(newIdSync)
