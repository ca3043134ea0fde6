import { Effect, Option, Schema } from "effect"
import { Database, decodeRow } from "../layers/database/Database.js"
import { NotFound } from "../src/errors.js"

export class SessionRow extends Schema.Class<SessionRow>("SessionRow")({
  id: Schema.String,
  title: Schema.NullOr(Schema.String),
  metadata: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  created_at: Schema.String,
  updated_at: Schema.String
}) {}

// Built on every lookup of a missing session, from fields that are ours: not re-validated (the
// schema's check cost more than the rest of a cached miss).
export const sessionNotFound = (id: string) =>
  new NotFound({ code: "SESSION_NOT_FOUND", detail: `No session ${id} exists for this tenant.` }, true)

const decodeSession = decodeRow(SessionRow)
const decodeSessions = decodeRow(Schema.Array(SessionRow))

export interface SessionPosition {
  readonly created_at: string
  readonly id: string
}

/** Every query takes the tenant: isolation is a property of this repository, not of the handlers. */
export class SessionsRepo extends Effect.Service<SessionsRepo>()("bulwark/SessionsRepo", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql

    const insert = (tenantId: string, session: SessionRow) =>
      db.insertUnique(
        "sessions.insert",
        sql`INSERT INTO sessions ${
          sql.insert({
            tenant_id: tenantId,
            id: session.id,
            title: session.title,
            metadata: JSON.stringify(session.metadata),
            created_at: session.created_at,
            updated_at: session.updated_at
          })
        }`,
        { onUnique: "SESSION_ALREADY_EXISTS", conflictDetail: `A session ${session.id} already exists.` }
      )

    const find = (tenantId: string, id: string) =>
      db.read(
        "sessions.find", sql`SELECT id, title, metadata, created_at, updated_at FROM sessions
            WHERE tenant_id = ${tenantId} AND id = ${id}`
      ).pipe(Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : Effect.asSome(decodeSession(rows[0]))))

    /** Newest first; `after` is the last row of the previous page. */
    const list = (tenantId: string, limit: number, after: Option.Option<SessionPosition>) =>
      db.read(
        "sessions.list", Option.match(after, {
          onNone: () =>
            sql`SELECT id, title, metadata, created_at, updated_at FROM sessions
                WHERE tenant_id = ${tenantId}
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
          onSome: (position) =>
            sql`SELECT id, title, metadata, created_at, updated_at FROM sessions
                WHERE tenant_id = ${tenantId}
                  AND (created_at < ${position.created_at} OR (created_at = ${position.created_at} AND id < ${position.id}))
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`
        })
      ).pipe(Effect.flatMap(decodeSessions))

    /** Returns whether the session existed. */
    const remove = (tenantId: string, id: string) =>
      db.write(
        "sessions.delete", sql<{ id: string }>`DELETE FROM sessions WHERE tenant_id = ${tenantId} AND id = ${id} RETURNING id`
      ).pipe(Effect.map((rows) => rows.length > 0))

    return { insert, find, list, remove } as const
  })
}) {}
