/** The `errors` table: batched inserts from the ledger writer, and the operators' queries. */
import type { Statement } from "@effect/sql"
import { Effect, Either, Option, Schema } from "effect"
import { Database } from "../layers/database/Database.js"
import { ErrorRecord, type ListErrorsFilter } from "../src/domain/ErrorRecord.js"
import { type PayloadKind, PayloadKinds } from "../src/telemetry/Sanitize.js"

export interface LedgerRow {
  readonly error_id: string
  readonly occurred_at: string
  readonly type: ErrorRecord["type"]
  readonly code: string
  readonly status: number
  readonly message: string
  readonly stack: string | null
  readonly fingerprint: string
  readonly severity: ErrorRecord["severity"]
  readonly tenant_id: string | null
  readonly session_id: string | null
  readonly request_id: string | null
  readonly trace_id: string | null
  readonly method: string | null
  readonly route: string | null
  readonly user_agent: string | null
  /** Sanitised, at most 8 KiB: JSON text when the kind is `json`, else plain text. */
  readonly request_payload: string | null
  readonly request_payload_kind: PayloadKind | null
}

const { request_payload: _payload, request_payload_kind: _kind, unreadable_fields: _unreadable, ...storedFields } = ErrorRecord.fields

/** The columns as stored; the payload is read apart (`readPayload`), so that it can never fail a row. */
const StoredRow = Schema.Struct({
  ...storedFields,
  error_id: Schema.String,
  resolved: Schema.Union(Schema.Number, Schema.BigIntFromSelf).pipe(
    Schema.transform(Schema.Boolean, { decode: (n) => Number(n) !== 0, encode: (b) => (b ? 1 : 0) })
  )
})
type StoredRow = typeof StoredRow.Type

/** What an unreadable column is shown as when its field does not allow null (see `ErrorRecord.unreadable_fields`). */
const placeholders: Partial<Record<keyof StoredRow, unknown>> = {
  error_id: "",
  occurred_at: "",
  type: "internal",
  code: "",
  status: 0,
  message: "",
  fingerprint: "",
  severity: "critical",
  resolved: false
}

const decodeStored = Schema.decodeUnknownEither(StoredRow)
const decodeColumn = Object.fromEntries(
  Object.entries(StoredRow.fields).map(([name, schema]) => [name, Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)])
)

const isKind = (kind: unknown): kind is PayloadKind => typeof kind === "string" && (PayloadKinds as ReadonlyArray<string>).includes(kind)

/**
 * The payload as what it was stored as. A `json` payload that does not parse, a kind this version
 * does not know, or a row from before kinds whose text is not JSON is `unreadable`: shown as stored.
 */
const readPayload = (text: unknown, kind: unknown): { readonly payload: unknown; readonly kind: ErrorRecord["request_payload_kind"] } => {
  if (text === null || text === undefined) return { payload: null, kind: null }
  if (typeof text !== "string") return { payload: String(text), kind: "unreadable" }
  if (kind !== null && kind !== undefined && kind !== "json") return isKind(kind) ? { payload: text, kind } : { payload: text, kind: "unreadable" }
  try {
    return { payload: JSON.parse(text), kind: "json" }
  } catch {
    return { payload: text, kind: "unreadable" }
  }
}

/**
 * One stored row as a record, whatever it holds: a column that does not decode is named in
 * `unreadable_fields` and shown as null or a placeholder, never failing the row or the list.
 */
export const toRecord = (row: Record<string, unknown>): ErrorRecord => {
  const { kind, payload } = readPayload(row.request_payload, row.request_payload_kind)
  const stored = decodeStored(row)
  if (Either.isRight(stored)) {
    return new ErrorRecord({ ...stored.right, request_payload: payload, request_payload_kind: kind }, { disableValidation: true })
  }
  const fields: Record<string, unknown> = {}
  const unreadable: Array<string> = []
  for (const [name, decode] of Object.entries(decodeColumn)) {
    const decoded = decode(row[name])
    if (Either.isRight(decoded)) {
      fields[name] = decoded.right
    } else {
      unreadable.push(name)
      fields[name] = placeholders[name as keyof StoredRow] ?? null
    }
  }
  return new ErrorRecord(
    { ...(fields as StoredRow), request_payload: payload, request_payload_kind: kind, unreadable_fields: unreadable },
    { disableValidation: true }
  )
}

/** Whether reading a record met something it could not read (the caller ledgers that). */
export const isUnreadable = (record: ErrorRecord): boolean =>
  record.unreadable_fields !== undefined || record.request_payload_kind === "unreadable"

export const DEFAULT_ERRORS_LIMIT = 100

/**
 * PostgreSQL's text cannot hold U+0000 (22021), and one such character would fail the whole batch:
 * the ledger records what it was given, so NUL is kept as the replacement character, as other
 * undecodable bytes already are.
 */
const storable = (row: LedgerRow): LedgerRow => {
  let copy: Record<string, unknown> | undefined
  for (const [column, value] of Object.entries(row)) {
    if (typeof value === "string" && value.includes("\u0000")) {
      copy ??= { ...row }
      copy[column] = value.replaceAll("\u0000", "\uFFFD")
    }
  }
  return (copy as LedgerRow | undefined) ?? row
}

export class ErrorsRepo extends Effect.Service<ErrorsRepo>()("bulwark/ErrorsRepo", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    // A retry after a commit whose reply was lost (a dropped connection) finds its rows there already.
    const insertBatch = (rows: ReadonlyArray<LedgerRow>) =>
      db.write(
        "errors.insert_batch",
        sql`INSERT INTO errors ${sql.insert(rows.map((row) => ({ ...storable(row), resolved: 0 })))} ON CONFLICT (error_id) DO NOTHING`
      )

    const find = (errorId: string) =>
      db.read("errors.find", sql<Record<string, unknown>>`SELECT * FROM errors WHERE error_id = ${errorId}`).pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRecord))
      )

    const list = (filter: ListErrorsFilter) => {
      const conditions: Array<Statement.Fragment> = []
      if (filter.type !== undefined) conditions.push(sql`type = ${filter.type}`)
      if (filter.code !== undefined) conditions.push(sql`code = ${filter.code}`)
      if (filter.severity !== undefined) conditions.push(sql`severity = ${filter.severity}`)
      if (filter.session_id !== undefined) conditions.push(sql`session_id = ${filter.session_id}`)
      if (filter.resolved !== undefined) conditions.push(sql`resolved = ${filter.resolved ? 1 : 0}`)
      if (filter.since !== undefined) conditions.push(sql`occurred_at >= ${filter.since.toISOString()}`)
      const limit = filter.limit ?? DEFAULT_ERRORS_LIMIT
      return db.read(
        "errors.list", sql<Record<string, unknown>>`SELECT * FROM errors ${conditions.length > 0 ? sql`WHERE ${sql.and(conditions)}` : sql``}
            ORDER BY occurred_at DESC, error_id DESC LIMIT ${limit}`
      ).pipe(Effect.map((rows) => rows.map(toRecord)))
    }

    /** Marks the record resolved; `None` when no record has this id. */
    const resolve = (errorId: string, notes: string | null, resolvedAt: string) =>
      db.write(
        "errors.resolve", sql<Record<string, unknown>>`UPDATE errors SET resolved = 1, resolved_at = ${resolvedAt}, notes = ${notes} WHERE error_id = ${errorId} RETURNING *`
      ).pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRecord)))

    const countsBy = (column: "code" | "status" | "severity", since: string) =>
      db.read(
        `errors.count_by_${column}`, sql<{ key: string | number; count: number | bigint }>`SELECT ${sql(column)} AS key, COUNT(*) AS count FROM errors
            WHERE occurred_at >= ${since} GROUP BY ${sql(column)}`
      ).pipe(Effect.map((rows) => Object.fromEntries(rows.map((row) => [String(row.key), Number(row.count)]))))

    const stats = (since: string) =>
      Effect.all({
        byCode: countsBy("code", since),
        byStatus: countsBy("status", since),
        bySeverity: countsBy("severity", since),
        unresolved: db.read(
          "errors.count_unresolved", sql<{ count: number | bigint }>`SELECT COUNT(*) AS count FROM errors WHERE resolved = 0 AND occurred_at >= ${since}`
        ).pipe(Effect.map((rows) => Number(rows[0]?.count ?? 0))),
        last: list({ limit: 1, since: new Date(since) }).pipe(Effect.map((rows) => Option.fromNullable(rows[0])))
      })

    /** Deletes rows older than `cutoff`; returns how many. */
    const purgeOlderThan = (cutoff: string) =>
      db.write(
        "errors.purge", sql<{ error_id: string }>`DELETE FROM errors WHERE occurred_at < ${cutoff} RETURNING error_id`
      ).pipe(Effect.map((rows) => rows.length))

    return { insertBatch, find, list, resolve, stats, purgeOlderThan } as const
  })
}) {}
