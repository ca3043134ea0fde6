/**
 * Compile-time proof that the status table is exhaustive: `bun run typecheck` fails if a table
 * missing a tag is accepted (the `@ts-expect-error` would then be unused), and so the real table
 * in src/errors.ts, which has the same type, cannot miss a tag either.
 */
import type { StatusTable } from "../src/errors.js"

// @ts-expect-error Property 'Timeout' is missing: a tag without a status is rejected.
export const missingTimeout: StatusTable = {
  ValidationFailed: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  RateLimited: 429,
  Internal: 500,
  DbOperational: 503,
  CacheUnavailable: 503,
  MemoryUnavailable: 503,
  Overloaded: 503
}

export const withUnknownTag: StatusTable = {
  ValidationFailed: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  RateLimited: 429,
  Internal: 500,
  DbOperational: 503,
  CacheUnavailable: 503,
  MemoryUnavailable: 503,
  Overloaded: 503,
  Timeout: 504,
  // @ts-expect-error A status for a tag that does not exist is rejected too.
  Teapot: 418
}
