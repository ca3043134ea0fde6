/**
 * The HTTP side of rate limiting: which bucket a request counts against, and a decision of the
 * `RateLimiter` turned into what the edge sends (`RateLimit-*` headers, and past the limit 429
 * `RATE_LIMITED` with `Retry-After`).
 */
import type { HttpServerRequest } from "@effect/platform"
import { Effect, Option } from "effect"
import type { RateLimitDecision, RateLimiter } from "../../services/RateLimiter.js"
import { type CacheUnavailable, type DbOperational, RateLimited } from "../errors.js"
import { inFlightOf } from "./InFlight.js"

const peers = new WeakMap<HttpServerRequest.HttpServerRequest, () => string | undefined>()

/**
 * For a request built from Bun's own (the hot routes, `/mcp`): how to ask for its peer's address,
 * which is then asked only when it is needed (asking Bun costs a few µs a request).
 */
export const trackPeer = (request: HttpServerRequest.HttpServerRequest, address: () => string | undefined): void => {
  peers.set(request, address)
}

/** The client address's bucket: requests without credentials, and failed authentications (SPEC §4). */
export const addressBucket = (request: HttpServerRequest.HttpServerRequest): string =>
  `ip:${Option.getOrElse(request.remoteAddress, () => peers.get(request)?.() ?? "unknown")}`

/** The decision goes on the request for the edge's `RateLimit-*` headers; past the limit it fails. */
export const enforce = (decision: RateLimitDecision): Effect.Effect<void, RateLimited> =>
  Effect.withFiberRuntime((fiber) => {
    const request = inFlightOf(fiber)
    if (request !== undefined) request.rateLimit = decision
    return decision.allowed ? Effect.void : Effect.fail(new RateLimited({ retryAfterSeconds: decision.reset }))
  })

/** Counts the current request against `bucket`; past the limit it is refused. */
export const countAgainst = (
  limiter: RateLimiter,
  bucket: string
): Effect.Effect<void, RateLimited | CacheUnavailable | DbOperational> => Effect.flatMap(limiter.hit(bucket), enforce)
