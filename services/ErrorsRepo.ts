/** The `errors` table: batched inserts from the ledger writer, and the operators' queries. */
import type { Statement } from "@effect/sql"
import { Effect, Either, Option, Schema } from "effect"
import { Database } from "../layers/database/Database.js"
import { ErrorGroup, ErrorRecord, type ListErrorsFilter, type ListGroupsFilter } from "../src/domain/ErrorRecord.js"
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
const toRecord = (row: Record<string, unknown>): ErrorRecord => {
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
export const DEFAULT_GROUPS_LIMIT = 50

/** A group's trend: one count per clock hour (UTC) of the last day, oldest first. */
export const TREND_HOURS = 24
const HOUR_MILLIS = 3_600_000

/** The clock hours of a trend, as the first 13 characters of their RFC 3339 text (`2026-12-02T06`). */
const trendHours = (nowMillis: number): ReadonlyArray<string> => {
  const current = Math.floor(nowMillis / HOUR_MILLIS) * HOUR_MILLIS
  return Array.from({ length: TREND_HOURS }, (_, i) => new Date(current - (TREND_HOURS - 1 - i) * HOUR_MILLIS).toISOString().slice(0, 13))
}

interface GroupRow {
  readonly fingerprint: string
  readonly count: number | bigint | string
  readonly first_seen: string
  readonly last_seen: string
  readonly unresolved_count: number | bigint | string
  readonly error_id: string
  readonly code: string
  readonly status: number | bigint | string
  readonly type: ErrorGroup["type"]
  readonly route: string | null
  readonly severity: ErrorGroup["severity"]
}

/**
 * PostgreSQL's text cannot hold U+0000 (22021), and one such character would fail the whole batch:
 * the ledger records what it was given, so NUL is kept as the replacement character, as other
 * undecodable bytes already are. So is a lone surrogate, which a driver's UTF-8 encoder would have
 * replaced anyway and which a JSON parameter (below) would carry as an escape PostgreSQL refuses.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
const SURROGATE = /[\uD800-\uDFFF]/

const storableText = (value: string): string => {
  const text = value.includes("\u0000") ? value.replaceAll("\u0000", "\uFFFD") : value
  return SURROGATE.test(text) ? text.replace(LONE_SURROGATE, "\uFFFD") : text
}

/** The stored columns in the order of the insert statements below. */
const COLUMNS = [
  "error_id",
  "occurred_at",
  "type",
  "code",
  "status",
  "message",
  "stack",
  "fingerprint",
  "severity",
  "tenant_id",
  "session_id",
  "request_id",
  "trace_id",
  "method",
  "route",
  "user_agent",
  "request_payload",
  "request_payload_kind"
] as const satisfies ReadonlyArray<keyof LedgerRow>

const storableValue = (value: string | number | null): string | number | null => (typeof value === "string" ? storableText(value) : value)

/** A batch as one JSON parameter (PostgreSQL): an array of rows, each an array of its columns in `COLUMNS` order. */
const batchJson = (rows: ReadonlyArray<LedgerRow>): string =>
  JSON.stringify(rows.map((row) => COLUMNS.map((column) => storableValue(row[column]))))

const COLUMN_LIST = COLUMNS.join(", ")

/**
 * The row counts of the statements a batch is written with (SQLite). The driver keeps its 20 most
 * recently used statements prepared; a text per batch size would take those places from the
 * request path's statements and be compiled again and again. So a batch takes the smallest of
 * these and pads the rest with rows of NULLs, which the statement skips (at most 4 times the rows,
 * about 1.5 µs a row dearer than an exact fit in a measurement of 100 rows in 256).
 */
const MAX_STATEMENT_ROWS = 512
const STATEMENT_ROWS: ReadonlyArray<number> = [1, 4, 16, 64, 256, MAX_STATEMENT_ROWS]

/** The statement for up to `MAX_STATEMENT_ROWS` rows. */
const statementFor = (rows: number): { readonly rows: number; readonly text: string } =>
  PADDED_STATEMENTS.get(STATEMENT_ROWS.find((size) => size >= rows) ?? MAX_STATEMENT_ROWS)!

const PADDED_STATEMENTS: ReadonlyMap<number, { readonly rows: number; readonly text: string }> = new Map(
  STATEMENT_ROWS.map((size) => [size, {
    rows: size,
    text: `INSERT INTO errors (${COLUMN_LIST}, resolved)
      SELECT ${COLUMNS.map((_, i) => `column${i + 1}`).join(", ")}, 0
      FROM (VALUES ${Array(size).fill(`(${COLUMNS.map(() => "?").join(", ")})`).join(", ")})
      WHERE column1 IS NOT NULL
      ON CONFLICT (error_id) DO NOTHING`
  }])
)

/** The batch's values, then NULLs up to the statement's row count. */
const valuesParameters = (rows: ReadonlyArray<LedgerRow>, statementRows: number): Array<string | number | null> => {
  const parameters: Array<string | number | null> = []
  for (const row of rows) for (const column of COLUMNS) parameters.push(storableValue(row[column]))
  for (let i = rows.length * COLUMNS.length; i < statementRows * COLUMNS.length; i++) parameters.push(null)
  return parameters
}

export class ErrorsRepo extends Effect.Service<ErrorsRepo>()("bulwark/ErrorsRepo", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    /**
     * One statement per batch. A retry after a commit whose reply was lost (a dropped connection)
     * finds its rows there already.
     * - PostgreSQL: the whole batch as one JSON parameter, expanded by `jsonb_array_elements`: the
     *   statement's text never changes, so it is prepared once, and a row is one element to read
     *   rather than 18 bound parameters (as `jsonb` each row is parsed once, where `json` re-reads
     *   the text for every column: 2-3 times slower here). The parameter is text cast to JSON, since
     *   a string bound as `json` is sent as a JSON string (one scalar), not the array it holds.
     * - SQLite: a multi-row `VALUES` of a few fixed sizes (`STATEMENT_ROWS`) with the parameters
     *   laid out by hand (`@effect/sql`'s `sql.insert` compiled each row's 18 values through its
     *   template, about 6 µs a row, and made a statement text per batch size).
     *   `json_each` with one JSON parameter was measured too: 9-11 µs of CPU a row against
     *   3.5-5 µs, since SQLite parses each row's JSON again for every column it reads.
     */
    const insertBatch = (rows: ReadonlyArray<LedgerRow>) =>
      sql.onDialectOrElse({
        pg: () =>
          db.write(
            "errors.insert_batch",
            sql`INSERT INTO errors (${sql.unsafe(COLUMN_LIST)}, resolved)
              SELECT e ->> 0, e ->> 1, e ->> 2, e ->> 3, (e ->> 4)::int, e ->> 5, e ->> 6, e ->> 7, e ->> 8, e ->> 9,
                e ->> 10, e ->> 11, e ->> 12, e ->> 13, e ->> 14, e ->> 15, e ->> 16, e ->> 17, 0
              FROM jsonb_array_elements(${batchJson(rows)}::text::jsonb) AS e
              ON CONFLICT (error_id) DO NOTHING`
          ).pipe(Effect.asVoid),
        orElse: () => {
          // A batch larger than the largest statement (only where `batchSize` is set above it) takes several.
          const chunks: Array<ReadonlyArray<LedgerRow>> = []
          for (let start = 0; start < rows.length; start += MAX_STATEMENT_ROWS) chunks.push(rows.slice(start, start + MAX_STATEMENT_ROWS))
          return Effect.forEach(chunks, (chunk) => {
            const statement = statementFor(chunk.length)
            return db.write("errors.insert_batch", sql.unsafe(statement.text, valuesParameters(chunk, statement.rows)))
          }, { discard: true })
        }
      })

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

    /**
     * The counts by code, status and severity and the unresolved count, from one statement, so that
     * they are of one moment: read one by one, a row the ledger wrote in between was in some counts
     * and not in others (the total came out below the unresolved count plus the resolved ones).
     */
    const stats = (since: string) =>
      Effect.all({
        counts: db.read(
          "errors.counts",
          sql<{ code: string; status: number | string; severity: string; resolved: number | boolean; count: number | bigint }>`SELECT code, status, severity, resolved, COUNT(*) AS count
            FROM errors WHERE occurred_at >= ${since} GROUP BY code, status, severity, resolved`
        ),
        last: list({ limit: 1, since: new Date(since) }).pipe(Effect.map((rows) => Option.fromNullable(rows[0])))
      }).pipe(Effect.map(({ counts, last }) => {
        const byCode: Record<string, number> = {}
        const byStatus: Record<string, number> = {}
        const bySeverity: Record<string, number> = {}
        let unresolved = 0
        for (const row of counts) {
          const count = Number(row.count)
          byCode[row.code] = (byCode[row.code] ?? 0) + count
          byStatus[String(row.status)] = (byStatus[String(row.status)] ?? 0) + count
          bySeverity[row.severity] = (bySeverity[row.severity] ?? 0) + count
          if (!row.resolved) unresolved += count
        }
        return { byCode, byStatus, bySeverity, unresolved, last }
      }))

    /** Deletes rows older than `cutoff`; returns how many. */
    const purgeOlderThan = (cutoff: string) =>
      db.write(
        "errors.purge", sql<{ error_id: string }>`DELETE FROM errors WHERE occurred_at < ${cutoff} RETURNING error_id`
      ).pipe(Effect.map((rows) => rows.length))

    /**
     * Groups of the rows the filter picks, busiest first. The counts are taken in SQL; the fields
     * of the group (code, route, severity...) are those of its newest row, which also names it.
     */
    const groups = (filter: ListGroupsFilter & { readonly fingerprint?: string }, nowMillis: number) =>
      Effect.gen(function*() {
        const conditions: Array<Statement.Fragment> = []
        if (filter.fingerprint !== undefined) conditions.push(sql`fingerprint = ${filter.fingerprint}`)
        if (filter.code !== undefined) conditions.push(sql`code = ${filter.code}`)
        if (filter.type !== undefined) conditions.push(sql`type = ${filter.type}`)
        if (filter.severity !== undefined) conditions.push(sql`severity = ${filter.severity}`)
        if (filter.route !== undefined) conditions.push(sql`route = ${filter.route}`)
        if (filter.since !== undefined) conditions.push(sql`occurred_at >= ${filter.since.toISOString()}`)
        const where = conditions.length > 0 ? sql`WHERE ${sql.and(conditions)}` : sql``
        const having = filter.resolved === undefined
          ? sql``
          : filter.resolved
          ? sql`HAVING SUM(CASE WHEN resolved = 0 THEN 1 ELSE 0 END) = 0`
          : sql`HAVING SUM(CASE WHEN resolved = 0 THEN 1 ELSE 0 END) > 0`
        const limit = filter.limit ?? DEFAULT_GROUPS_LIMIT
        const rows = yield* db.read(
          "errors.groups",
          sql<GroupRow>`WITH g AS (
              SELECT fingerprint, COUNT(*) AS count, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen,
                     SUM(CASE WHEN resolved = 0 THEN 1 ELSE 0 END) AS unresolved_count
              FROM errors ${where} GROUP BY fingerprint ${having}
              ORDER BY COUNT(*) DESC, MAX(occurred_at) DESC LIMIT ${limit})
            SELECT g.fingerprint, g.count, g.first_seen, g.last_seen, g.unresolved_count,
                   e.error_id, e.code, e.status, e.type, e.route, e.severity
            FROM g JOIN errors e ON e.fingerprint = g.fingerprint AND e.occurred_at = g.last_seen
            ORDER BY g.count DESC, g.last_seen DESC, e.error_id DESC`
        )
        // Rows of one group that share its newest instant: the first (highest id) stands for it.
        const newest = new Map<string, GroupRow>()
        for (const row of rows) if (!newest.has(row.fingerprint)) newest.set(row.fingerprint, row)
        if (newest.size === 0) return []
        const hours = trendHours(nowMillis)
        const counts = yield* db.read(
          "errors.group_trends",
          sql<{ fingerprint: string; hour: string; count: number | bigint | string }>`SELECT fingerprint, SUBSTR(occurred_at, 1, 13) AS hour, COUNT(*) AS count
            FROM errors WHERE occurred_at >= ${hours[0]!}
              AND fingerprint IN ${sql.in([...newest.keys()])} GROUP BY fingerprint, SUBSTR(occurred_at, 1, 13)`
        )
        const trends = new Map<string, Map<string, number>>()
        for (const row of counts) {
          const byHour = trends.get(row.fingerprint) ?? new Map<string, number>()
          byHour.set(row.hour, Number(row.count))
          trends.set(row.fingerprint, byHour)
        }
        return [...newest.values()].map((row) =>
          new ErrorGroup({
            fingerprint: row.fingerprint,
            code: row.code,
            status: Number(row.status),
            type: row.type,
            route: row.route,
            severity: row.severity,
            count: Number(row.count),
            first_seen: row.first_seen,
            last_seen: row.last_seen,
            last_error_id: row.error_id,
            unresolved_count: Number(row.unresolved_count),
            trend: hours.map((hour) => trends.get(row.fingerprint)?.get(hour) ?? 0)
          }, { disableValidation: true })
        )
      })

    /** Resolves every unresolved row of a group; returns how many. */
    const resolveGroup = (fingerprint: string, notes: string | null, resolvedAt: string) =>
      Effect.gen(function*() {
        const resolved = yield* db.write(
          "errors.resolve_group", sql<{ error_id: string }>`UPDATE errors SET resolved = 1, resolved_at = ${resolvedAt}, notes = ${notes}
              WHERE fingerprint = ${fingerprint} AND resolved = 0 RETURNING error_id`
        )
        return resolved.length
      })

    return { insertBatch, find, list, resolve, stats, purgeOlderThan, groups, resolveGroup } as const
  })
}) {}
