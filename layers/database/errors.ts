/**
 * Driver errors are translated here, once (SPEC §3): a unique violation the caller expects becomes
 * `Conflict`; busy, locked, I/O, a missing table or an unreachable server become `DbOperational`;
 * anything that can only be a bug (a syntax error, a constraint the caller did not expect) is a
 * defect. Nothing becomes a 404 or a `null`.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { Conflict, type ConflictCode, DbOperational } from "../../src/errors.js"

export type ConflictCodeType = typeof ConflictCode.Type

export type DriverFault =
  | { readonly _tag: "UniqueViolation" }
  | { readonly _tag: "Operational"; readonly reason: string; readonly transient: boolean }
  | { readonly _tag: "Bug"; readonly reason: string }

interface DriverError {
  readonly code?: unknown
  readonly errno?: unknown
  readonly message?: unknown
}

const driverErrorOf = (error: SqlError): DriverError =>
  typeof error.cause === "object" && error.cause !== null ? (error.cause as DriverError) : {}

/** SQLite result codes (bun:sqlite `code`) and PostgreSQL SQLSTATEs, classified. */
export const classifyDriverError = (error: SqlError): DriverFault => {
  const driver = driverErrorOf(error)
  const code = typeof driver.code === "string" ? driver.code : ""
  const message = typeof driver.message === "string" ? driver.message : ""
  if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505") {
    return { _tag: "UniqueViolation" }
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return { _tag: "Operational", reason: "locked", transient: true }
  }
  if (
    code.startsWith("SQLITE_IOERR") || code === "SQLITE_FULL" || code.startsWith("SQLITE_READONLY") ||
    code.startsWith("SQLITE_CANTOPEN") || code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT") ||
    code === "SQLITE_PROTOCOL" || code === "SQLITE_NOMEM"
  ) {
    return { _tag: "Operational", reason: "io", transient: false }
  }
  if (code === "SQLITE_ERROR" && /no such (table|column)/.test(message)) {
    // The schema the process expects is not there (a dropped table, a missed migration): the
    // database cannot serve this call, which is an operational fault, not a client error.
    return { _tag: "Operational", reason: "schema", transient: false }
  }
  if (code.startsWith("08") || code === "57P01" || code === "57P03" || code === "53300" || code === "ECONNREFUSED" || code === "ECONNRESET") {
    return { _tag: "Operational", reason: "unreachable", transient: true }
  }
  if (code === "40001" || code === "40P01" || code === "55P03") {
    return { _tag: "Operational", reason: "locked", transient: true }
  }
  if (code === "57014") {
    return { _tag: "Operational", reason: "timeout", transient: true }
  }
  if (code.startsWith("SQLITE_CONSTRAINT") || code.startsWith("23") || code === "SQLITE_ERROR" || code.startsWith("42")) {
    return { _tag: "Bug", reason: code }
  }
  // An error without a recognised code (a closed connection, a driver-level failure): the database
  // could not serve; retrying may help.
  return { _tag: "Operational", reason: code === "" ? "driver" : code, transient: true }
}

export interface TranslateOptions {
  /** The conflict to report when a unique constraint fails; without it a unique violation is a bug. */
  readonly onUnique?: ConflictCodeType | undefined
  readonly conflictDetail?: string | undefined
}

export function translateSqlError(operation: string): (error: SqlError) => Effect.Effect<never, DbOperational>
export function translateSqlError(
  operation: string,
  options: TranslateOptions
): (error: SqlError) => Effect.Effect<never, Conflict | DbOperational>
export function translateSqlError(operation: string, options?: TranslateOptions) {
  return (error: SqlError): Effect.Effect<never, Conflict | DbOperational> => {
  const fault = classifyDriverError(error)
  switch (fault._tag) {
    case "UniqueViolation":
      return options?.onUnique !== undefined
        ? Effect.fail(new Conflict({ code: options.onUnique, detail: options.conflictDetail ?? "The resource already exists." }))
        : Effect.die(error)
    case "Operational":
      return Effect.fail(
        new DbOperational({ operation, reason: fault.reason, transient: fault.transient, retryAfterSeconds: 1, cause: error })
      )
    case "Bug":
      return Effect.die(error)
  }
  }
}
