/**
 * What the edge knows of the request in flight, for the work below it: the request id and user
 * agent (an event stream ledgers its own failures after its handler has returned), and a slot the
 * rate limiter fills for the edge to send as `RateLimit-*` headers. One fiber-local value, set
 * once per request: each `FiberRef` a request sets copies the fiber's references twice.
 */
import { FiberRef } from "effect"
import { globalValue } from "effect/GlobalValue"

export interface RateLimitHeaders {
  readonly limit: number
  readonly remaining: number
  /** Seconds until the window resets. */
  readonly reset: number
}

export interface InFlightRequest {
  readonly requestId: string
  readonly userAgent: string | undefined
  /** Left by the rate limiter; the edge turns it into headers. */
  rateLimit: RateLimitHeaders | undefined
}

export const currentRequest = globalValue("bulwark/InFlight/currentRequest", () => FiberRef.unsafeMake<InFlightRequest | undefined>(undefined))
