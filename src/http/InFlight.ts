/**
 * What the edge knows of the request in flight, for the work below it: the request id and user
 * agent (an event stream ledgers its own failures after its handler has returned), and a slot the
 * rate limit's decision is left in for the edge to send as `RateLimit-*` headers. It is kept with the request
 * object, which every fiber serving the request already has in its context: a fiber reference
 * set per request would copy the fiber's references twice.
 */
import { HttpServerRequest } from "@effect/platform"
import { Context, Effect, type Fiber, Option } from "effect"

export interface RateLimitHeaders {
  readonly limit: number
  readonly remaining: number
  /** Seconds until the window resets. */
  readonly reset: number
}

export interface InFlightRequest {
  readonly requestId: string
  readonly userAgent: string | undefined
  /** Left where the request was counted (`RateLimit.ts`); the edge turns it into headers. */
  rateLimit: RateLimitHeaders | undefined
}

const inFlight = new WeakMap<HttpServerRequest.HttpServerRequest, InFlightRequest>()

/** Called by the edge once per request, before anything below it runs. */
export const track = (request: HttpServerRequest.HttpServerRequest, state: InFlightRequest): void => {
  inFlight.set(request, state)
}

/** The request a fiber serves, if any (a background job serves none). */
export const inFlightOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): InFlightRequest | undefined => {
  const request = Context.getOption(fiber.currentContext, HttpServerRequest.HttpServerRequest)
  return Option.isSome(request) ? inFlight.get(request.value) : undefined
}

/** The request this fiber serves, if any (a background job serves none). */
export const currentRequest: Effect.Effect<InFlightRequest | undefined> = Effect.withFiberRuntime((fiber) => Effect.succeed(inFlightOf(fiber)))
