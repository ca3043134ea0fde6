/**
 * Caps on open event streams (SPEC §1): per API key (`BULWARK_MAX_STREAMS_PER_KEY`, past it 429
 * `RATE_LIMITED`) and per process (`BULWARK_MAX_STREAMS`, past it 503 `OVERLOADED`). A slot is
 * taken before the stream's response is sent and given back once when the stream ends.
 */
import { Context, Effect, Layer, Metric } from "effect"
import { Overloaded, RateLimited } from "../src/errors.js"
import { eventStreamCap } from "../src/telemetry/Metrics.js"

export interface StreamCaps {
  readonly perKey: number
  readonly total: number
}

export const defaultStreamCaps: StreamCaps = { perKey: 100, total: 10_000 }

/** A slot's release: idempotent, so every way a stream can end may call it. */
export type ReleaseSlot = () => void

/** A stream ends when a client leaves; one second is enough for another to have gone. */
const RETRY_AFTER_SECONDS = 1

export interface StreamSlotsShape {
  readonly acquire: (keyId: string) => Effect.Effect<ReleaseSlot, RateLimited | Overloaded>
  readonly status: () => { readonly open: number; readonly perKeyCap: number; readonly cap: number }
}

export class StreamSlots extends Context.Tag("bulwark/StreamSlots")<StreamSlots, StreamSlotsShape>() {
  static readonly layer = (caps: StreamCaps) =>
    Layer.effect(
      StreamSlots,
      Effect.gen(function*() {
        yield* Metric.set(Metric.tagged(eventStreamCap, "scope", "key"), caps.perKey)
        yield* Metric.set(Metric.tagged(eventStreamCap, "scope", "process"), caps.total)
        const byKey = new Map<string, number>()
        let open = 0
        const acquire = (keyId: string) =>
          Effect.suspend((): Effect.Effect<ReleaseSlot, RateLimited | Overloaded> => {
            const ofKey = byKey.get(keyId) ?? 0
            if (ofKey >= caps.perKey) return Effect.fail(new RateLimited({ retryAfterSeconds: RETRY_AFTER_SECONDS }))
            if (open >= caps.total) {
              return Effect.fail(new Overloaded({ resource: "event streams", retryAfterSeconds: RETRY_AFTER_SECONDS }))
            }
            byKey.set(keyId, ofKey + 1)
            open += 1
            let released = false
            return Effect.succeed(() => {
              if (released) return
              released = true
              open -= 1
              const left = (byKey.get(keyId) ?? 1) - 1
              if (left === 0) byKey.delete(keyId)
              else byKey.set(keyId, left)
            })
          })
        return { acquire, status: () => ({ open, perKeyCap: caps.perKey, cap: caps.total }) }
      })
    )
}
