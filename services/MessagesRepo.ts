import { Effect, Option, Schema } from "effect"
import { Database, decodeRow } from "../layers/database/Database.js"
import * as GroupCommit from "../layers/database/GroupCommit.js"
import { Message } from "../src/domain/Message.js"

export class MessageRow extends Schema.Class<MessageRow>("MessageRow")({
  id: Schema.String,
  session_id: Schema.String,
  seq: Schema.Number,
  agent_id: Schema.String,
  content: Schema.String,
  metadata: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  created_at: Schema.String
}) {}

export const toMessage = (row: MessageRow) => new Message(row, { disableValidation: true })

const appended = (message: Omit<MessageRow, "seq">, seq: number) =>
  Option.some(new MessageRow({ ...message, seq }, { disableValidation: true }))

const decodeMessages = decodeRow(Schema.Array(MessageRow))

/** A message as the `messages` table stores it: its metadata already as JSON text. */
const storedRow = (tenantId: string, message: Omit<MessageRow, "seq">, seq: number, metadata: string) => ({
  tenant_id: tenantId,
  session_id: message.session_id,
  seq,
  id: message.id,
  agent_id: message.agent_id,
  content: message.content,
  metadata,
  created_at: message.created_at
})

/** One message to append, with its tenant. */
export interface Append {
  readonly tenantId: string
  readonly message: Omit<MessageRow, "seq">
}

/** Rows per group-committed transaction at most (see `appendGrouped`). */
export const MAX_APPEND_BATCH = 64

/** Every query takes the tenant, as in `SessionsRepo`. */
export class MessagesRepo extends Effect.Service<MessagesRepo>()("bulwark/MessagesRepo", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    /**
     * Takes the session's next `seq` and inserts the message, atomically: the row lock on the session
     * (the write lock on SQLite) orders concurrent posters, so `seq` is gapless across instances.
     * `None` when there is no session. On PostgreSQL one statement, so the lock is held for one round
     * trip; SQLite has no data-modifying CTE, so there it is a transaction of two. On PostgreSQL a retry
     * after a lost connection may find the row its own first attempt committed (the reply was lost):
     * then it answers with that row instead of writing a second one or failing on its own id.
     */
    const append = (tenantId: string, message: Omit<MessageRow, "seq">) => {
      const appendedAs = (seq: number) => appended(message, seq)
      const metadata = JSON.stringify(message.metadata)
      return sql.onDialectOrElse({
        pg: () =>
          db.write(
            "messages.append",
            sql<{ seq: number }>`WITH earlier AS (
                SELECT seq FROM messages WHERE tenant_id = ${tenantId} AND session_id = ${message.session_id} AND id = ${message.id}
              ), bumped AS (
                UPDATE sessions SET last_seq = last_seq + 1
                WHERE tenant_id = ${tenantId} AND id = ${message.session_id} AND NOT EXISTS (SELECT 1 FROM earlier)
                RETURNING last_seq
              ), inserted AS (
                INSERT INTO messages (tenant_id, session_id, seq, id, agent_id, content, metadata, created_at)
                SELECT ${tenantId}, ${message.session_id}, last_seq, ${message.id}, ${message.agent_id},
                  ${message.content}, ${metadata}, ${message.created_at}
                FROM bumped RETURNING seq
              )
              SELECT seq FROM inserted UNION ALL SELECT seq FROM earlier`
          ).pipe(Effect.map((rows) => rows[0] === undefined ? Option.none<MessageRow>() : appendedAs(rows[0].seq))),
        orElse: () =>
          db.transaction(
            "messages.append",
            Effect.gen(function*() {
              const bumped = yield* db.write(
                "sessions.next_seq",
                sql<{ last_seq: number }>`UPDATE sessions SET last_seq = last_seq + 1
                  WHERE tenant_id = ${tenantId} AND id = ${message.session_id} RETURNING last_seq`
              )
              const seq = bumped[0]?.last_seq
              if (seq === undefined) return Option.none<MessageRow>()
              yield* db.write("messages.insert", sql`INSERT INTO messages ${
                sql.insert(storedRow(tenantId, message, seq, metadata))
              }`)
              return appendedAs(seq)
            })
          )
      })
    }

    /**
     * `append` for many messages in one transaction: each (tenant, session) bumps its `last_seq` once
     * by its count, and its messages take the numbers in between in the order given, so `seq` stays
     * gapless. One result per message, in order; `None` where there is no session. On PostgreSQL one
     * statement (a message its own earlier attempt already committed is answered as in `append`),
     * which locks its sessions in key order, so that batches of several sessions from several
     * instances cannot deadlock; on SQLite one `UPDATE` per session and one multi-row `INSERT`.
     */
    const appendBatch = (items: ReadonlyArray<Append>) =>
      sql.onDialectOrElse({
        pg: () => {
          const values = sql.csv(items.map(({ message, tenantId }, ord) =>
            sql`(${ord}::int, ${tenantId}, ${message.session_id}, ${message.id}, ${message.agent_id}, ${message.content}, ${
              JSON.stringify(message.metadata)
            }, ${message.created_at})`
          ))
          return db.write(
            "messages.append_batch",
            sql<{ id: string; seq: number }>`WITH input (ord, tenant_id, session_id, id, agent_id, content, metadata, created_at) AS (
                VALUES ${values}
              ), earlier AS (
                SELECT m.id, m.seq FROM messages m JOIN input i ON m.id = i.id AND m.tenant_id = i.tenant_id AND m.session_id = i.session_id
              ), fresh AS (
                SELECT * FROM input i WHERE NOT EXISTS (SELECT 1 FROM earlier e WHERE e.id = i.id)
              ), counts AS (
                SELECT tenant_id, session_id, count(*)::int AS n FROM fresh GROUP BY tenant_id, session_id
              ), locked AS (
                SELECT s.tenant_id, s.id FROM sessions s JOIN counts c ON s.tenant_id = c.tenant_id AND s.id = c.session_id
                ORDER BY s.tenant_id, s.id FOR UPDATE OF s
              ), bumped AS (
                UPDATE sessions s SET last_seq = s.last_seq + c.n FROM counts c, locked l
                WHERE s.tenant_id = c.tenant_id AND s.id = c.session_id AND l.tenant_id = s.tenant_id AND l.id = s.id
                RETURNING s.tenant_id, s.id, s.last_seq - c.n AS base
              ), inserted AS (
                INSERT INTO messages (tenant_id, session_id, seq, id, agent_id, content, metadata, created_at)
                SELECT f.tenant_id, f.session_id, b.base + (row_number() OVER (PARTITION BY f.tenant_id, f.session_id ORDER BY f.ord))::int,
                  f.id, f.agent_id, f.content, f.metadata, f.created_at
                FROM fresh f JOIN bumped b ON b.tenant_id = f.tenant_id AND b.id = f.session_id
                RETURNING id, seq
              )
              SELECT id, seq FROM inserted UNION ALL SELECT id, seq FROM earlier`
          ).pipe(Effect.map((rows) => {
            const seqs = new Map(rows.map((row) => [row.id, Number(row.seq)]))
            return items.map(({ message }) => {
              const seq = seqs.get(message.id)
              return seq === undefined ? Option.none<MessageRow>() : appended(message, seq)
            })
          }))
        },
        orElse: () =>
          db.transaction(
            "messages.append_batch",
            Effect.gen(function*() {
              const sessions = new Map<string, { readonly tenantId: string; readonly sessionId: string; readonly indexes: Array<number> }>()
              items.forEach(({ message, tenantId }, index) => {
                const key = `${tenantId} ${message.session_id}`
                const group = sessions.get(key)
                if (group === undefined) sessions.set(key, { tenantId, sessionId: message.session_id, indexes: [index] })
                else group.indexes.push(index)
              })
              const seqs: Array<number | undefined> = new Array(items.length)
              for (const { indexes, sessionId, tenantId } of sessions.values()) {
                const bumped = yield* db.write(
                  "sessions.next_seqs",
                  sql<{ last_seq: number }>`UPDATE sessions SET last_seq = last_seq + ${indexes.length}
                    WHERE tenant_id = ${tenantId} AND id = ${sessionId} RETURNING last_seq`
                )
                const last = bumped[0]?.last_seq
                if (last !== undefined) indexes.forEach((index, k) => seqs[index] = last - indexes.length + 1 + k)
              }
              const rows = items.flatMap(({ message, tenantId }, index) => {
                const seq = seqs[index]
                return seq === undefined ? [] : [storedRow(tenantId, message, seq, JSON.stringify(message.metadata))]
              })
              if (rows.length > 0) yield* db.write("messages.insert_batch", sql`INSERT INTO messages ${sql.insert(rows)}`)
              return items.map(({ message }, index) => {
                const seq = seqs[index]
                return seq === undefined ? Option.none<MessageRow>() : appended(message, seq)
              })
            })
          )
      })

    /**
     * `append`, group-committed with the other appends of this event-loop turn (see `GroupCommit`).
     * Every typed failure of a write is the database's (unreachable, locked, overloaded), so it is
     * every caller's; a defect (a constraint a row broke) sends the batch back row by row.
     * Not for use inside a transaction: the batch commits on its own.
     */
    const grouped = yield* GroupCommit.make({
      name: "messages.append",
      maxBatch: MAX_APPEND_BATCH,
      // A batch of one is the plain append: the batch's statement is wider than one row needs.
      writeBatch: (items) => items.length === 1 ? Effect.map(append(items[0]!.tenantId, items[0]!.message), (row) => [row]) : appendBatch(items),
      writeOne: (item: Append) => append(item.tenantId, item.message),
      isShared: () => true
    })
    const appendGrouped = (tenantId: string, message: Omit<MessageRow, "seq">) => grouped.submit({ tenantId, message })

    /** Messages with `seq > after`, in order. */
    const listAfter = (tenantId: string, sessionId: string, after: number, limit: number) =>
      db.read(
        "messages.list",
        sql`SELECT id, session_id, seq, agent_id, content, metadata, created_at FROM messages
            WHERE tenant_id = ${tenantId} AND session_id = ${sessionId} AND seq > ${after}
            ORDER BY seq LIMIT ${limit}`
      ).pipe(Effect.flatMap(decodeMessages))

    /** The session's last `seq` (0 before its first message); `None` when there is no session. */
    const lastSeq = (tenantId: string, sessionId: string) =>
      db.read(
        "sessions.last_seq",
        sql<{ last_seq: number }>`SELECT last_seq FROM sessions WHERE tenant_id = ${tenantId} AND id = ${sessionId}`
      ).pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.last_seq)))

    /**
     * The last `seq` of each of these sessions that exists, with its tenant: one read for many
     * sessions, so the tenant is returned for the caller to match rather than taken.
     */
    const lastSeqs = (sessionIds: ReadonlyArray<string>) =>
      db.read(
        "sessions.last_seqs",
        sql<{ tenant_id: string; id: string; last_seq: number | string }>`SELECT tenant_id, id, last_seq FROM sessions
            WHERE ${sql.in("id", sessionIds)}`
      ).pipe(Effect.map((rows) => rows.map((row) => ({ tenantId: row.tenant_id, sessionId: row.id, lastSeq: Number(row.last_seq) }))))

    return { append, appendBatch, appendGrouped, listAfter, lastSeq, lastSeqs } as const
  })
}) {}
