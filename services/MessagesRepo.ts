import { Effect, Option, Schema } from "effect"
import { Database, decodeRow } from "../layers/database/Database.js"
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

const decodeMessages = decodeRow(Schema.Array(MessageRow))

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
      const appended = (seq: number) => Option.some(new MessageRow({ ...message, seq }, { disableValidation: true }))
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
          ).pipe(Effect.map((rows) => rows[0] === undefined ? Option.none<MessageRow>() : appended(rows[0].seq))),
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
                sql.insert({
                  tenant_id: tenantId,
                  session_id: message.session_id,
                  seq,
                  id: message.id,
                  agent_id: message.agent_id,
                  content: message.content,
                  metadata,
                  created_at: message.created_at
                })
              }`)
              return appended(seq)
            })
          )
      })
    }

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

    return { append, listAfter, lastSeq, lastSeqs } as const
  })
}) {}
