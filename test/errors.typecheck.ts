/**
 * Compile-time proof that the status table is exhaustive: both tables below are built from the
 * real one and have its type, so `bun run typecheck` fails if the type ever accepts a table with
 * a tag missing or one too many (an `@ts-expect-error` with no error is itself an error).
 */
import { type StatusTable, statusByTag } from "../src/errors.js"

const { Timeout: _timeout, ...withoutTimeout } = statusByTag

// @ts-expect-error Property 'Timeout' is missing: a tag without a status is rejected.
export const missingTimeout: StatusTable = withoutTimeout

export const withUnknownTag: StatusTable = {
  ...statusByTag,
  // @ts-expect-error A status for a tag that does not exist is rejected too.
  Teapot: 418
}
