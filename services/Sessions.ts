/** Sessions of a tenant: create, read, list by cursor, delete. */
import { Effect, Either, Option, Schema } from "effect"
import { StoredText } from "../src/domain/Ids.js"
import { CreateSession, Session, SessionPage } from "../src/domain/Session.js"
import { FieldIssue, ValidationFailed } from "../src/errors.js"
import { newId, nowIso } from "./Clock.js"
import { CachedReads } from "./CachedReads.js"
import { Events } from "./Events.js"
import { Idempotency } from "./Idempotency.js"
import { type SessionPosition, sessionNotFound, SessionRow, SessionsRepo } from "./SessionsRepo.js"

export const DEFAULT_PAGE_SIZE = 50

/** Cached session rows live this long at most, which also bounds staleness if an invalidation is lost. */
const SESSION_TTL = "60 seconds"
/**
 * "No such session" is cached too, so that repeated lookups of a missing id (a client polling a
 * deleted session, a scan of guessed ids) do not each cost a database read; creating the session
 * removes the entry.
 */
const MISSING_SESSION_TTL = "60 seconds"
const sessionCacheKey = (tenantId: string, id: string) => `session:${tenantId}:${id}`

const Cursor = Schema.compose(Schema.StringFromBase64Url, Schema.parseJson(Schema.Tuple(StoredText, StoredText)))
const encodeCursor = Schema.encodeSync(Cursor)
const decodeCursor = Schema.decodeUnknownEither(Cursor)

const toSession = (row: SessionRow) => new Session(row, { disableValidation: true })

const invalidCursor = new ValidationFailed({
  detail: "The cursor is not one this server issued.",
  errors: [new FieldIssue({ pointer: "/cursor", detail: "must be a next_cursor value returned by a previous page" })]
})

export class Sessions extends Effect.Service<Sessions>()("bulwark/Sessions", {
  effect: Effect.gen(function*() {
    const repo = yield* SessionsRepo
    const cached = yield* CachedReads
    const events = yield* Events
    const idempotency = yield* Idempotency

    /**
     * A fresh random id can only collide with this request's own first attempt, committed although
     * its reply was lost on the way back (a retry after a dropped connection): the row found is this
     * write, not a conflict. A client-chosen id keeps its 409, as another client may hold it.
     */
    const insertGenerated = (tenantId: string, row: SessionRow) =>
      repo.insert(tenantId, row).pipe(
        Effect.catchTag("Conflict", (conflict) =>
          Effect.flatMap(repo.find(tenantId, row.id), (stored) =>
            Option.isSome(stored) && Date.parse(stored.value.created_at) === Date.parse(row.created_at) ? Effect.void : Effect.fail(conflict)))
      )

    const create = Effect.fn("Sessions.create")(function*(tenantId: string, input: CreateSession) {
      const now = yield* nowIso
      const row = {
        id: input.id ?? (yield* newId),
        title: input.title ?? null,
        metadata: input.metadata ?? {},
        created_at: now,
        updated_at: now
      }
      yield* input.id === undefined ? insertGenerated(tenantId, row) : repo.insert(tenantId, row)
      return toSession(row)
    })

    /**
     * `create` under the caller's Idempotency-Key. A lookup of the id before it existed may have
     * cached its absence: that entry goes once the row is committed (not before, or a read in
     * between could cache the absence again).
     */
    const createOnce = (tenantId: string, input: CreateSession, idempotencyKey: string | undefined) =>
      idempotency.run({
        scope: `tenant:${tenantId}`,
        key: idempotencyKey,
        operation: "sessions.create",
        body: Schema.encodeSync(CreateSession)(input),
        result: Session,
        write: create(tenantId, input)
      }).pipe(Effect.tap((session) => cached.invalidate(sessionCacheKey(tenantId, session.id))))

    // The hot read: not a span of its own (a span costs more than a read served from the cache); the
    // cache and database calls below it have theirs.
    const get = (tenantId: string, id: string) =>
      Effect.flatMap(
        cached.read(sessionCacheKey(tenantId, id), SessionRow, SESSION_TTL, () => repo.find(tenantId, id), { missTtl: MISSING_SESSION_TTL }),
        (row) => (Option.isNone(row) ? sessionNotFound(id) : Effect.succeed(toSession(row.value)))
      )

    const list = Effect.fn("Sessions.list")(function*(
      tenantId: string,
      options: { readonly limit?: number | undefined; readonly cursor?: string | undefined }
    ) {
      const limit = options.limit ?? DEFAULT_PAGE_SIZE
      let after = Option.none<SessionPosition>()
      if (options.cursor !== undefined) {
        const decoded = decodeCursor(options.cursor)
        if (Either.isLeft(decoded)) return yield* invalidCursor
        after = Option.some({ created_at: decoded.right[0], id: decoded.right[1] })
      }
      // One row more than asked tells whether another page exists without a second query.
      const rows = yield* repo.list(tenantId, limit + 1, after)
      const page = rows.slice(0, limit)
      const last = page[page.length - 1]
      const next_cursor = rows.length > limit && last !== undefined ? encodeCursor([last.created_at, last.id]) : null
      return new SessionPage({ data: page.map(toSession), next_cursor }, { disableValidation: true })
    })

    const remove = Effect.fn("Sessions.delete")(function*(tenantId: string, id: string) {
      if (!(yield* repo.remove(tenantId, id))) return yield* sessionNotFound(id)
      yield* cached.invalidate(sessionCacheKey(tenantId, id))
      // Its messages and memory went with it (ON DELETE CASCADE); its open streams end now.
      yield* events.sessionDeleted(tenantId, id)
    })

    return { create, createOnce, get, list, remove } as const
  }),
  dependencies: [SessionsRepo.Default]
}) {}
