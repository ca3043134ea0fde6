import { Clock, Effect } from "effect"

/** RFC 3339 UTC with milliseconds, from Effect's `Clock` so tests can drive it with `TestClock`. */
export const nowIso = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis).toISOString())

export const newId = Effect.sync(() => crypto.randomUUID())
