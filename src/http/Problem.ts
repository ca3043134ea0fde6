/**
 * The one place a failure becomes a response (SPEC §2). Whatever reached the edge (a typed error,
 * a decode failure, an unknown route, a defect) is classified into an `AppError`, given an
 * `error_id`, logged, and rendered as `application/problem+json`. Nothing server-side (stack, SQL,
 * driver message, path) is ever copied into the body.
 */
import { HttpApiError, HttpServerError, HttpServerResponse } from "@effect/platform"
import { Cause, Option } from "effect"
import {
  type AppError,
  FieldIssue,
  Internal,
  isAppError,
  NotFound,
  problemTypes,
  retryAfterOf,
  slugOf,
  statusOf,
  ValidationFailed
} from "../errors.js"

/** Schema messages end in `, actual <value>`; the value is the client's own input and may be a secret. */
const withoutActualValue = (message: string): string => {
  const cut = message.indexOf(", actual ")
  return (cut === -1 ? message : message.slice(0, cut)).split("\n")[0] ?? message
}

const pointerOf = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((segment) => "/" + String(segment).replaceAll("~", "~0").replaceAll("/", "~1")).join("")

/** One entry per pointer: a union (`string | null`) reports each member's complaint separately. */
export const fromDecodeError = (error: HttpApiError.HttpApiDecodeError): ValidationFailed => {
  const details = new Map<string, Array<string>>()
  for (const issue of error.issues) {
    const pointer = pointerOf(issue.path)
    const detail = issue._tag === "Unexpected" ? "is not a field of this request" : withoutActualValue(issue.message)
    const known = details.get(pointer) ?? []
    if (!known.includes(detail)) known.push(detail)
    details.set(pointer, known)
  }
  return new ValidationFailed({
    detail: "The request does not match the schema of this route.",
    errors: Array.from(details, ([pointer, messages]) => new FieldIssue({ pointer, detail: messages.join("; ") }))
  })
}

const unreadableBody = new ValidationFailed({
  detail: "The request body is not valid JSON.",
  errors: [new FieldIssue({ pointer: "", detail: "must be a JSON document" })]
})

const isBodyDecodeFailure = (u: unknown): boolean =>
  HttpServerError.isServerError(u) && u._tag === "RequestError" && u.reason === "Decode"

/** Classifies whatever failed into exactly one catalogue entry. */
export const classify = (cause: Cause.Cause<unknown>): AppError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (isAppError(error)) return error
    if (error instanceof HttpApiError.HttpApiDecodeError) return fromDecodeError(error)
    if (HttpServerError.isServerError(error) && error._tag === "RouteNotFound") {
      return new NotFound({ code: "ROUTE_NOT_FOUND", detail: "No route matches this method and path." })
    }
    if (isBodyDecodeFailure(error)) return unreadableBody
    return new Internal({ reason: "an untyped failure reached the edge", cause: error })
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    // HttpApi reads JSON bodies with `orDie`: an unparsable body arrives here as a defect.
    if (isBodyDecodeFailure(defect.value)) return unreadableBody
    return new Internal({ reason: "a defect reached the edge", cause: defect.value })
  }
  return new Internal({ reason: Cause.isInterruptedOnly(cause) ? "the request was interrupted" : "an empty failure", cause: Cause.pretty(cause) })
}

/** What the client may see of an error: for 5xx a fixed sentence, for 4xx the error's own detail. */
export const clientDetail = (error: AppError): string => {
  switch (error._tag) {
    case "Internal":
      return "An internal error occurred."
    case "DbOperational":
      return "The database could not serve this request."
    case "CacheUnavailable":
      return "The cache could not serve this request."
    case "MemoryUnavailable":
      return "The memory store could not serve this request."
    case "Overloaded":
      return "Too many concurrent requests are queued; try again shortly."
    case "Timeout":
      return "The request did not complete before its deadline."
    case "RateLimited":
      return "Too many requests; slow down."
    default:
      return error.detail
  }
}

export interface ProblemJson {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly instance: string
  readonly code: string
  readonly error_id: string
  readonly retry_after_seconds?: number
  readonly errors?: ReadonlyArray<{ readonly pointer: string; readonly detail: string }>
}

export const problemBody = (error: AppError, errorId: string): ProblemJson => {
  const retryAfter = retryAfterOf(error)
  const errors = error._tag === "ValidationFailed" || error._tag === "PayloadTooLarge" ? error.errors : undefined
  const extensions = error._tag === "DbOperational" ? error.extensions : undefined
  return {
    ...extensions,
    type: `/problems/${slugOf(error.code)}`,
    title: problemTypes[error.code].title,
    status: statusOf(error),
    detail: clientDetail(error),
    instance: `urn:uuid:${errorId}`,
    code: error.code,
    error_id: errorId,
    ...(retryAfter === undefined ? {} : { retry_after_seconds: retryAfter }),
    ...(errors === undefined ? {} : { errors: errors.map(({ detail, pointer }) => ({ pointer, detail })) })
  }
}

export const problemResponse = (error: AppError, errorId: string): HttpServerResponse.HttpServerResponse => {
  const body = problemBody(error, errorId)
  const headers: Record<string, string> = {}
  if (body.retry_after_seconds !== undefined) headers["retry-after"] = String(body.retry_after_seconds)
  if (error._tag === "MethodNotAllowed") headers["allow"] = error.allowed.join(", ")
  if (error._tag === "Unauthenticated") {
    headers["www-authenticate"] = error.code === "AUTH_MISSING"
      ? `Bearer realm="bulwark"`
      : `Bearer realm="bulwark", error="invalid_token"`
  }
  return HttpServerResponse.unsafeJson(body, {
    status: body.status,
    contentType: "application/problem+json",
    headers
  })
}
