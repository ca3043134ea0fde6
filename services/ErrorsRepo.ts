/** The `errors` table: batched inserts from the ledger writer, and the operators' queries. */
import type { Statement } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { Database, decodeRow } from "../layers/database/Database.js"
import { ErrorRecord, type ListErrorsFilter } from "../src/domain/ErrorRecord.js"

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
  /** Sanitised JSON text, at most 8 KiB. */
  readonly request_payload: string | null
}

const RecordRow = Schema.Struct({
  ...ErrorRecord.fields,
  error_id: Schema.String,
  request_payload: Schema.NullOr(Schema.parseJson()),
  resolved: Schema.Union(Schema.Number, Schema.BigIntFromSelf).pipe(
    Schema.transform(Schema.Boolean, { decode: (n) => Number(n) !== 0, encode: (b) => (b ? 1 : 0) })
  )
})
const decodeRecord = decodeRow(RecordRow)
const decodeRecords = decodeRow(Schema.Array(RecordRow))
const toRecord = (row: typeof RecordRow.Type) => new ErrorRecord(row, { disableValidation: true })

export const DEFAULT_ERRORS_LIMIT = 100

export class ErrorsRepo extends Effect.Service<ErrorsRepo>()("bulwark/ErrorsRepo", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    const insertBatch = (rows: ReadonlyArray<LedgerRow>) =>
      db.write("errors.insert_batch", sql`INSERT INTO errors ${sql.insert(rows.map((row) => ({ ...row, resolved: 0 })))}`)

    const find = (errorId: string) =>
      db.read("errors.find", sql`SELECT * FROM errors WHERE error_id = ${errorId}`).pipe(
        Effect.flatMap((rows) => (rows[0] === undefined ? Effect.succeedNone : Effect.asSome(Effect.map(decodeRecord(rows[0]), toRecord))))
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
        "errors.list", sql`SELECT * FROM errors ${conditions.length > 0 ? sql`WHERE ${sql.and(conditions)}` : sql``}
            ORDER BY occurred_at DESC, error_id DESC LIMIT ${limit}`
      ).pipe(Effect.flatMap(decodeRecords), Effect.map((rows) => rows.map(toRecord)))
    }

    /** Marks the record resolved; `None` when no record has this id. */
    const resolve = (errorId: string, notes: string | null, resolvedAt: string) =>
      db.write(
        "errors.resolve", sql`UPDATE errors SET resolved = 1, resolved_at = ${resolvedAt}, notes = ${notes} WHERE error_id = ${errorId} RETURNING *`
      ).pipe(
        Effect.flatMap((rows) => (rows[0] === undefined ? Effect.succeedNone : Effect.asSome(Effect.map(decodeRecord(rows[0]), toRecord))))
      )

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
