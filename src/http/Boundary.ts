/**
 * The edge every request passes: request id in and out, the body rules (JSON only, at most 1 MiB,
 * parsable), and the problem rendering of every failure below it, including unknown routes and
 * defects. It is installed as the API-level middleware, so it sees failures before HttpApi's own
 * encoder would turn them into framework-shaped bodies.
 */
import { HttpApiBuilder, HttpMethod, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { Effect } from "effect"
import { type AppError, FieldIssue, PayloadTooLarge, statusOf, UnsupportedMediaType, ValidationFailed } from "../errors.js"
import { classify, newErrorId, problemResponse, serverMessage } from "./Problem.js"

export const MAX_BODY_BYTES = 1024 * 1024

const REQUEST_ID_HEADER = "x-request-id"
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The client's `X-Request-Id` when it is a sane token, else a fresh one. */
const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const given = request.headers[REQUEST_ID_HEADER]
  return given !== undefined && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID()
}

const tooLarge = new PayloadTooLarge({
  detail: "The request body is over 1 MiB.",
  errors: [new FieldIssue({ pointer: "", detail: "must be at most 1048576 bytes" })]
})

const isJsonMediaType = (contentType: string): boolean => {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? ""
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"))
}

/**
 * Checks the body before any route sees it. The text read here is cached by the request, so the
 * route's own decoding reads it again without a second read from the socket.
 */
const guardBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<void, AppError> =>
  Effect.gen(function*() {
    if (!HttpMethod.hasBody(request.method)) return
    const declaredLength = Number(request.headers["content-length"] ?? "0")
    const chunked = request.headers["transfer-encoding"] !== undefined
    if (declaredLength > MAX_BODY_BYTES) return yield* tooLarge
    if (declaredLength === 0 && !chunked) return
    const contentType = request.headers["content-type"] ?? ""
    if (!isJsonMediaType(contentType)) {
      return yield* new UnsupportedMediaType({ detail: "Request bodies must be application/json." })
    }
    const text = yield* request.text.pipe(
      Effect.mapError(() =>
        new ValidationFailed({
          detail: "The request body could not be read.",
          errors: [new FieldIssue({ pointer: "", detail: "must be a complete JSON document" })]
        })
      )
    )
    if (Buffer.byteLength(text) > MAX_BODY_BYTES) return yield* tooLarge
    try {
      JSON.parse(text)
    } catch {
      return yield* new ValidationFailed({
        detail: "The request body is not valid JSON.",
        errors: [new FieldIssue({ pointer: "", detail: "must be a JSON document" })]
      })
    }
  })

/** Renders a failure as a problem response and records it under a fresh `error_id`. */
export const renderFailure = (error: AppError, requestId: string) =>
  Effect.gen(function*() {
    const errorId = yield* newErrorId
    const status = statusOf(error)
    const log = status >= 500 ? Effect.logError : Effect.logWarning
    yield* log(serverMessage(error)).pipe(
      Effect.annotateLogs({ error_id: errorId, code: error.code, status, request_id: requestId })
    )
    return problemResponse(error, errorId)
  })

export const problemBoundary = (app: HttpApp.Default): HttpApp.Default =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdOf(request)
    const response = yield* Effect.zipRight(guardBody(request), app).pipe(
      Effect.catchAllCause((cause) => renderFailure(classify(cause), requestId))
    )
    return HttpServerResponse.setHeader(response, REQUEST_ID_HEADER, requestId)
  })

export const layer = HttpApiBuilder.middleware(problemBoundary)
