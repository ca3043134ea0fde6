/**
 * The RFC 9457 problem body (SPEC §2) and the documented error schemas the API declares per
 * endpoint. Declared errors only describe responses in OpenAPI: every failure is rendered by the
 * one problem boundary (src/http/Problem.ts), never by HttpApi's schema encoder.
 */
import { HttpApiSchema } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import { HealthReport } from "./Health.js"
import { AppErrorClasses, codesByTag, type ErrorTag, FieldIssue, statusByTag } from "../errors.js"

export class ProblemBody extends Schema.Class<ProblemBody>("Problem")({
  type: Schema.String.annotations({ description: "Relative URI of the problem type; GET it for a description." }),
  title: Schema.String,
  status: Schema.Int,
  detail: Schema.String,
  instance: Schema.String.annotations({ description: "urn:uuid:<error_id>" }),
  code: Schema.String,
  error_id: Schema.UUID.annotations({ description: "A lowercase UUID v7 (RFC 9562): time-ordered, the same id as in the ledger, span and log line." }),
  retry_after_seconds: Schema.optional(Schema.Int.annotations({ description: "Only on 429 and 503." })),
  errors: Schema.optional(Schema.Array(FieldIssue).annotations({ description: "Only on 400, 413 and 415." })),
  health: Schema.optional(HealthReport.annotations({ description: "Only on GET /health's 503: the health report." }))
}) {}

type ErrorClass<Tag extends ErrorTag> = Extract<(typeof AppErrorClasses)[number], { readonly _tag: Tag }>

const classByTag = Object.fromEntries(AppErrorClasses.map((errorClass) => [errorClass._tag, errorClass])) as {
  readonly [Tag in ErrorTag]: ErrorClass<Tag>
}

/**
 * The schema an endpoint declares for an error tag: its type is the tagged error (so handlers stay
 * typed), its encoded side is the problem body with the status from the one status table.
 */
const documented = <Tag extends ErrorTag>(tag: Tag) => {
  const errorClass = classByTag[tag]
  const codes = codesByTag[tag].join(", ")
  return Schema.transformOrFail(ProblemBody, Schema.instanceOf(errorClass) as Schema.Schema<InstanceType<ErrorClass<Tag>>>, {
    strict: true,
    decode: (body, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, body, "problem bodies are read as ProblemBody, not decoded to errors")),
    encode: (error, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, error, "errors are rendered by the problem boundary"))
  }).annotations(
    HttpApiSchema.annotations({
      identifier: `${tag}Problem`,
      description: `${tag}: ${codes}`,
      status: statusByTag[tag]
    })
  ).pipe(HttpApiSchema.withEncoding({ kind: "Json", contentType: "application/problem+json" }))
}

export const ApiError = {
  ValidationFailed: documented("ValidationFailed"),
  Unauthenticated: documented("Unauthenticated"),
  Forbidden: documented("Forbidden"),
  NotFound: documented("NotFound"),
  MethodNotAllowed: documented("MethodNotAllowed"),
  Conflict: documented("Conflict"),
  PayloadTooLarge: documented("PayloadTooLarge"),
  UnsupportedMediaType: documented("UnsupportedMediaType"),
  RateLimited: documented("RateLimited"),
  Internal: documented("Internal"),
  DbOperational: documented("DbOperational"),
  CacheUnavailable: documented("CacheUnavailable"),
  MemoryUnavailable: documented("MemoryUnavailable"),
  Overloaded: documented("Overloaded"),
  Timeout: documented("Timeout")
} as const
