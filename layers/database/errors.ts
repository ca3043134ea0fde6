/**
 * Driver errors are translated here, once (SPEC §3): a unique violation the caller expects becomes
 * `Conflict`; busy, locked, I/O, a missing table or an unreachable server become `DbOperational`;
 * anything that can only be a bug (a syntax error, a constraint the caller did not expect) is a
 * defect. Nothing becomes a 404 or a `null`.
 */
import { SqlError } from "@effect/sql/SqlError"
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

const SQLSTATE = /^[0-9A-Z]{5}$/

/**
 * Where each driver keeps the code: bun:sqlite and `pg` in `code` (`pg` also puts socket errors
 * such as ECONNREFUSED there), Bun's PostgreSQL driver puts SQLSTATE in `errno` and its own
 * `ERR_POSTGRES_*` in `code`.
 */
export const driverCodeOf = (error: SqlError): string => {
  const driver = driverErrorOf(error)
  const code = typeof driver.code === "string" ? driver.code : ""
  if (typeof driver.errno === "string" && SQLSTATE.test(driver.errno)) return driver.errno
  return code
}

const unreachable: DriverFault = { _tag: "Operational", reason: "unreachable", transient: true }
const locked: DriverFault = { _tag: "Operational", reason: "locked", transient: true }

/** SPEC §8, exactly: anything not listed there is a defect that carries its SQLSTATE. */
const classifySqlState = (state: string): DriverFault => {
  if (state === "23505") return { _tag: "UniqueViolation" }
  if (state === "40001" || state === "40P01" || state === "55P03") return locked
  if (state.startsWith("08") || state === "57P01" || state === "57P02" || state === "57P03" || state === "53300") return unreachable
  if (state === "57014") return { _tag: "Operational", reason: "timeout", transient: true }
  // A table or column of our schema that is not there: the schema is missing or behind.
  if (state === "42P01" || state === "42703") return { _tag: "Operational", reason: "schema", transient: false }
  return { _tag: "Bug", reason: state }
}

const classifySqlite = (code: string, message: string): DriverFault => {
  if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY") return { _tag: "UniqueViolation" }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return locked
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
  if (code.startsWith("SQLITE_CONSTRAINT") || code === "SQLITE_ERROR") return { _tag: "Bug", reason: code }
  return { _tag: "Operational", reason: code, transient: true }
}

/** SQLite result codes (bun:sqlite `code`) and PostgreSQL SQLSTATEs, classified. */
export const classifyDriverError = (error: SqlError): DriverFault => {
  const code = driverCodeOf(error)
  if (code.startsWith("SQLITE_")) {
    const message = driverErrorOf(error).message
    return classifySqlite(code, typeof message === "string" ? message : "")
  }
  if (SQLSTATE.test(code)) return classifySqlState(code)
  // No SQLSTATE: the connection itself failed (refused, reset, closed under us, timed out while
  // connecting). The database could not serve; a new connection may.
  return code === "" ? { _tag: "Operational", reason: "driver", transient: true } : unreachable
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
        : Effect.die(new SqlError({ cause: error.cause, message: `${operation} failed with an unexpected unique violation: ${error.message}` }))
    case "Operational":
      return Effect.fail(
        new DbOperational({ operation, reason: fault.reason, transient: fault.transient, retryAfterSeconds: 1, cause: error })
      )
    case "Bug":
      // The ledger records a defect's message: it names the operation and the driver's code.
      return Effect.die(new SqlError({ cause: error.cause, message: `${operation} failed with ${fault.reason}: ${error.message}` }))
  }
  }
}
