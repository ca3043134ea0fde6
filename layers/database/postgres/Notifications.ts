/**
 * PostgreSQL's LISTEN/NOTIFY, for what needs to hear other instances' changes. Sent with
 * `SELECT pg_notify($1, $2)` (a `NOTIFY chan, $1` with a parameter is a syntax error, 42601) through
 * the `SqlClient`, so inside a transaction it is delivered on commit and dropped on rollback.
 * Heard on `Bun.SQL`'s one listening connection, which reconnects by itself: every (re)subscription
 * is told as `Listening`, since notifications sent while it was away are lost and the listener must
 * read what it missed. Empty payloads are delivered as they are.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import type { SQL } from "bun"
import { Effect, Stream } from "effect"
import { describeDriverError } from "./BunPgClient.js"

export type Heard =
  | { readonly _tag: "Listening" }
  | { readonly _tag: "Notification"; readonly payload: string }

export const notify = (channel: string, payload: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.asVoid(sql`SELECT pg_notify(${channel}, ${payload})`))

/** What `channel` hears, for as long as the stream is consumed. */
export const listen = (pool: SQL, channel: string): Stream.Stream<Heard, SqlError> =>
  Stream.asyncPush<Heard, SqlError>((emit) =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          pool.listen(
            channel,
            (payload) => emit.single({ _tag: "Notification", payload }),
            () => emit.single({ _tag: "Listening" })
          ),
        catch: (cause) => new SqlError({ cause, message: `cannot listen on ${channel}: ${describeDriverError(cause)}` })
      }),
      // A failed UNLISTEN only leaves a subscription that the pool's close ends; it is logged.
      (subscription) =>
        Effect.tryPromise(() => subscription.unlisten()).pipe(
          Effect.catchAll((error) => Effect.logWarning(`cannot unlisten ${channel}`).pipe(Effect.annotateLogs({ cause: String(error.cause) })))
        )
    ))
