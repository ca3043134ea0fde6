/**
 * The error catalogue (SPEC §3): one tagged error per row, the one table from tag to HTTP status,
 * and the problem-type catalogue behind every `code`.
 */
import { Cause, Schema } from "effect"

export class FieldIssue extends Schema.Class<FieldIssue>("FieldIssue")({
  pointer: Schema.String,
  detail: Schema.String
}) {}

export class ValidationFailed extends Schema.TaggedError<ValidationFailed>()("ValidationFailed", {
  detail: Schema.String,
  errors: Schema.Array(FieldIssue)
}) {
  get code() {
    return "VALIDATION_FAILED" as const
  }
}

export const UnauthenticatedCode = Schema.Literal("AUTH_MISSING", "AUTH_INVALID", "AUTH_EXPIRED", "AUTH_REVOKED")

export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()("Unauthenticated", {
  code: UnauthenticatedCode,
  detail: Schema.String
}) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  detail: Schema.String
}) {
  get code() {
    return "FORBIDDEN" as const
  }
}

export const NotFoundCode = Schema.Literal(
  "SESSION_NOT_FOUND",
  "MEMORY_KEY_NOT_FOUND",
  "ERROR_NOT_FOUND",
  "TENANT_NOT_FOUND",
  "KEY_NOT_FOUND",
  "ROUTE_NOT_FOUND"
)

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  code: NotFoundCode,
  detail: Schema.String
}) {}

/** A known path asked with a method it does not have; `allowed` is what it has (the `Allow` header). */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  detail: Schema.String,
  allowed: Schema.Array(Schema.String)
}) {
  get code() {
    return "METHOD_NOT_ALLOWED" as const
  }
}

export const ConflictCode = Schema.Literal(
  "SESSION_ALREADY_EXISTS",
  "TENANT_ALREADY_EXISTS",
  "IDEMPOTENCY_KEY_REUSED"
)

export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  code: ConflictCode,
  detail: Schema.String
}) {}

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  detail: Schema.String,
  errors: Schema.Array(FieldIssue)
}) {
  get code() {
    return "PAYLOAD_TOO_LARGE" as const
  }
}

export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", {
  detail: Schema.String
}) {
  get code() {
    return "UNSUPPORTED_MEDIA_TYPE" as const
  }
}

export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  retryAfterSeconds: Schema.Int
}) {
  get code() {
    return "RATE_LIMITED" as const
  }
}

/** A defect: `reason` and `cause` are for the ledger and logs only, never for the client. */
export class Internal extends Schema.TaggedError<Internal>()("Internal", {
  reason: Schema.String,
  cause: Schema.Defect
}) {
  get code() {
    return "INTERNAL_ERROR" as const
  }
}

/** The database could not serve. `operation` names the call; `cause` is the driver error (server side only). */
export class DbOperational extends Schema.TaggedError<DbOperational>()("DbOperational", {
  operation: Schema.String,
  reason: Schema.String,
  /** Whether trying again can help (busy, locked, a dropped connection). */
  transient: Schema.Boolean,
  retryAfterSeconds: Schema.Int,
  cause: Schema.Defect,
  /** RFC 9457 extension members for the client (`/health` puts its report here); never server detail. */
  extensions: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
}) {
  get code() {
    return "DATABASE_UNAVAILABLE" as const
  }
}

export class CacheUnavailable extends Schema.TaggedError<CacheUnavailable>()("CacheUnavailable", {
  operation: Schema.String,
  reason: Schema.String,
  retryAfterSeconds: Schema.Int,
  cause: Schema.Defect
}) {
  get code() {
    return "CACHE_UNAVAILABLE" as const
  }
}

/** The memory store could not serve; `transient` as for `DbOperational`. */
export class MemoryUnavailable extends Schema.TaggedError<MemoryUnavailable>()("MemoryUnavailable", {
  operation: Schema.String,
  reason: Schema.String,
  transient: Schema.Boolean,
  retryAfterSeconds: Schema.Int,
  cause: Schema.Defect
}) {
  get code() {
    return "MEMORY_UNAVAILABLE" as const
  }
}

export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  resource: Schema.String,
  retryAfterSeconds: Schema.Int
}) {
  get code() {
    return "OVERLOADED" as const
  }
}

export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  afterMillis: Schema.Int
}) {
  get code() {
    return "TIMEOUT" as const
  }
}

export const AppErrorClasses = [
  ValidationFailed,
  Unauthenticated,
  Forbidden,
  NotFound,
  MethodNotAllowed,
  Conflict,
  PayloadTooLarge,
  UnsupportedMediaType,
  RateLimited,
  Internal,
  DbOperational,
  CacheUnavailable,
  MemoryUnavailable,
  Overloaded,
  Timeout
] as const

export type AppError = InstanceType<(typeof AppErrorClasses)[number]>
export type ErrorTag = AppError["_tag"]
export type ErrorCode = AppError["code"]

export const isAppError = (u: unknown): u is AppError =>
  AppErrorClasses.some((errorClass) => u instanceof errorClass)

/**
 * A table with exactly one entry per tag. Used for the status table below; a tag added to
 * `AppErrorClasses` without an entry here fails `bun run typecheck` (see test/errors.typecheck.ts).
 */
export type StatusTable = { readonly [Tag in ErrorTag]: 400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 429 | 500 | 503 | 504 }

export const statusByTag: StatusTable = {
  ValidationFailed: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  Conflict: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  RateLimited: 429,
  Internal: 500,
  DbOperational: 503,
  CacheUnavailable: 503,
  MemoryUnavailable: 503,
  Overloaded: 503,
  Timeout: 504
}

export const statusOf = (error: AppError): number => statusByTag[error._tag]

/** Seconds a client should wait before retrying; only 429 and 503 carry one (SPEC §2). */
export const retryAfterOf = (error: AppError): number | undefined => {
  switch (error._tag) {
    case "RateLimited":
    case "DbOperational":
    case "CacheUnavailable":
    case "MemoryUnavailable":
    case "Overloaded":
      return Math.max(1, error.retryAfterSeconds)
    default:
      return undefined
  }
}

export interface ProblemType {
  readonly title: string
  /** What a client should do when it gets this problem; served at `GET /problems/{slug}`. */
  readonly advice: string
}

/** Every code of the catalogue with its title and advice: exhaustive over `ErrorCode`. */
export const problemTypes: { readonly [Code in ErrorCode]: ProblemType } = {
  VALIDATION_FAILED: {
    title: "Validation failed",
    advice: "The request is malformed. Fix the fields named in `errors` and send it again; retrying unchanged will fail the same way."
  },
  AUTH_MISSING: {
    title: "Authentication required",
    advice: "Send `Authorization: Bearer <api key or access token>`."
  },
  AUTH_INVALID: {
    title: "Invalid credentials",
    advice: "The credential is unknown or malformed. Check the key or obtain a new access token."
  },
  AUTH_EXPIRED: {
    title: "Credentials expired",
    advice: "The access token has expired. Exchange your API key for a new one at POST /v1/auth/token."
  },
  AUTH_REVOKED: {
    title: "Credentials revoked",
    advice: "The key or token was revoked. Ask an administrator for a new key."
  },
  FORBIDDEN: {
    title: "Forbidden",
    advice: "The credential is valid but not allowed to do this. Use a key that has the permission."
  },
  SESSION_NOT_FOUND: {
    title: "Session not found",
    advice: "No such session exists for your tenant. Check the id; do not retry."
  },
  MEMORY_KEY_NOT_FOUND: {
    title: "Memory key not found",
    advice: "The key does not exist in this session's memory, or it has expired."
  },
  ERROR_NOT_FOUND: {
    title: "Error record not found",
    advice: "No error record has this error_id. It may have been deleted by retention."
  },
  TENANT_NOT_FOUND: {
    title: "Tenant not found",
    advice: "No tenant has this id."
  },
  KEY_NOT_FOUND: {
    title: "API key not found",
    advice: "No API key has this id."
  },
  ROUTE_NOT_FOUND: {
    title: "Route not found",
    advice: "No route matches this method and path. See /openapi.json for the API."
  },
  METHOD_NOT_ALLOWED: {
    title: "Method not allowed",
    advice: "This path exists but not with this method. Use one of the methods in the `Allow` header."
  },
  SESSION_ALREADY_EXISTS: {
    title: "Session already exists",
    advice: "A session with this id already exists. Choose another id or omit it to get a generated one."
  },
  TENANT_ALREADY_EXISTS: {
    title: "Tenant already exists",
    advice: "A tenant with this name already exists. Choose another name."
  },
  IDEMPOTENCY_KEY_REUSED: {
    title: "Idempotency key reused",
    advice: "This Idempotency-Key was used with a different body. Use a new key for a different request."
  },
  PAYLOAD_TOO_LARGE: {
    title: "Payload too large",
    advice: "The body is over 1 MiB, or a field is over its limit (see `errors`). Send less."
  },
  UNSUPPORTED_MEDIA_TYPE: {
    title: "Unsupported media type",
    advice: "Send request bodies as `Content-Type: application/json`."
  },
  RATE_LIMITED: {
    title: "Rate limited",
    advice: "Too many requests for this key. Wait `Retry-After` seconds before sending again."
  },
  INTERNAL_ERROR: {
    title: "Internal error",
    advice: "A bug on our side. It was recorded under the error_id; quote it when reporting. Retrying may not help."
  },
  DATABASE_UNAVAILABLE: {
    title: "Database unavailable",
    advice: "The database could not serve the request; nothing was changed by it. Retry after `Retry-After` seconds."
  },
  CACHE_UNAVAILABLE: {
    title: "Cache unavailable",
    advice: "The cache this deployment requires could not serve. Retry after `Retry-After` seconds."
  },
  MEMORY_UNAVAILABLE: {
    title: "Memory store unavailable",
    advice: "The session memory store could not serve. Retry after `Retry-After` seconds."
  },
  OVERLOADED: {
    title: "Overloaded",
    advice: "Too many concurrent writes are queued. Retry after `Retry-After` seconds."
  },
  TIMEOUT: {
    title: "Request timed out",
    advice: "The request passed its deadline and its work was stopped. It may be retried; POSTs with an Idempotency-Key are safe to retry."
  }
}

/** `SESSION_NOT_FOUND` → `session-not-found`: the slug of the problem type URI `/problems/{slug}`. */
export const slugOf = (code: ErrorCode): string => code.toLowerCase().replaceAll("_", "-")

export const codeOfSlug = (slug: string): ErrorCode | undefined => {
  const code = slug.toUpperCase().replaceAll("-", "_")
  return code in problemTypes ? (code as ErrorCode) : undefined
}

/** Every code with the status its tag maps to: the source for `/problems/{slug}` and the docs. */
export const codesByTag: { readonly [Tag in ErrorTag]: ReadonlyArray<ErrorCode> } = {
  ValidationFailed: ["VALIDATION_FAILED"],
  Unauthenticated: UnauthenticatedCode.literals,
  Forbidden: ["FORBIDDEN"],
  NotFound: NotFoundCode.literals,
  MethodNotAllowed: ["METHOD_NOT_ALLOWED"],
  Conflict: ConflictCode.literals,
  PayloadTooLarge: ["PAYLOAD_TOO_LARGE"],
  UnsupportedMediaType: ["UNSUPPORTED_MEDIA_TYPE"],
  RateLimited: ["RATE_LIMITED"],
  Internal: ["INTERNAL_ERROR"],
  DbOperational: ["DATABASE_UNAVAILABLE"],
  CacheUnavailable: ["CACHE_UNAVAILABLE"],
  MemoryUnavailable: ["MEMORY_UNAVAILABLE"],
  Overloaded: ["OVERLOADED"],
  Timeout: ["TIMEOUT"]
}

export const statusOfCode = (code: ErrorCode): number => {
  for (const [tag, codes] of Object.entries(codesByTag) as Array<[ErrorTag, ReadonlyArray<ErrorCode>]>) {
    if (codes.includes(code)) return statusByTag[tag]
  }
  throw new Error(`code ${code} belongs to no tag`)
}

/** Server-side description of an error, for the ledger and logs only: never sent to a client. */
export const serverMessageOf = (error: AppError): string => {
  switch (error._tag) {
    case "Internal":
      return error.cause instanceof Error ? `${error.reason}: ${error.cause.name}: ${error.cause.message}` : `${error.reason}: ${String(error.cause)}`
    case "DbOperational":
    case "CacheUnavailable":
    case "MemoryUnavailable":
    {
      // Without a cause the reason is the whole story; never print "null" in its place.
      const cause = (error.cause as { message?: unknown } | null | undefined)?.message ?? error.cause
      return cause === null || cause === undefined ? `${error.operation} failed (${error.reason})` : `${error.operation} failed (${error.reason}): ${String(cause)}`
    }
    case "RateLimited":
      return `rate limited; retry after ${error.retryAfterSeconds}s`
    case "Overloaded":
      return `${error.resource} is overloaded`
    case "Timeout":
      return `deadline of ${error.afterMillis} ms passed`
    default:
      return error.detail
  }
}

/** The stack behind an error, when there is one: defects and dependency failures. */
export const stackOf = (error: AppError): string | null => {
  switch (error._tag) {
    case "Internal":
      return error.cause instanceof Error && error.cause.stack !== undefined
        ? error.cause.stack
        : Cause.pretty(Cause.die(error.cause))
    case "DbOperational":
    case "CacheUnavailable":
    case "MemoryUnavailable":
      return error.cause instanceof Error ? (error.cause.stack ?? null) : null
    default:
      return null
  }
}
