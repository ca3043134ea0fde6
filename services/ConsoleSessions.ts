/**
 * Sign-in to the operators' console (SPEC §12): the admin token, entered once, is exchanged for a
 * session whose id travels in a cookie. The id is random and not the token; only its SHA-256 is
 * stored, and signing out deletes the row, so the session ends on the server, on every instance.
 */
import { Clock, Effect, Redacted } from "effect"
import { Database } from "../layers/database/Database.js"
import { AdminToken } from "../layers/Secrets.js"
import { randomBase64Url, secretsEqual, sha256Hex } from "../src/Digests.js"
import { Unauthenticated } from "../src/errors.js"

/** How long a console session lasts from sign-in (a working day); then the operator signs in again. */
export const CONSOLE_SESSION_SECONDS = 8 * 60 * 60

/** 32 random bytes, base64url: the cookie's whole value. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/

export interface ConsoleSession {
  readonly id: Redacted.Redacted<string>
  readonly expiresAt: string
}

export class ConsoleSessions extends Effect.Service<ConsoleSessions>()("bulwark/ConsoleSessions", {
  effect: Effect.gen(function*() {
    const db = yield* Database
    const sql = db.sql
    const adminToken = yield* AdminToken

    const invalid = (detail: string) => new Unauthenticated({ code: "AUTH_INVALID", detail })

    /** A new session for the right admin token; a wrong one is `AUTH_INVALID` like any bad credential. */
    const signIn = Effect.fn("ConsoleSessions.signIn")(function*(token: Redacted.Redacted<string>) {
      if (!secretsEqual(Redacted.value(token), Redacted.value(adminToken))) {
        return yield* invalid("The admin token is not valid.")
      }
      const now = yield* Clock.currentTimeMillis
      const id = randomBase64Url(32)
      const session = { id_hash: sha256Hex(id), created_at: new Date(now).toISOString(), expires_at: new Date(now + CONSOLE_SESSION_SECONDS * 1000).toISOString() }
      // Expired rows go as new ones come: the table holds at most the sessions of the last day's sign-ins.
      yield* db.write("console_sessions.purge", sql`DELETE FROM console_sessions WHERE expires_at < ${session.created_at}`)
      yield* db.write("console_sessions.sign_in", sql`INSERT INTO console_sessions ${sql.insert(session)}`)
      return { id: Redacted.make(id), expiresAt: session.expires_at } satisfies ConsoleSession
    })

    /** The session a cookie names: unknown (or signed out) is `AUTH_INVALID`, past its time `AUTH_EXPIRED`. */
    const check = Effect.fn("ConsoleSessions.check")(function*(id: Redacted.Redacted<string>) {
      const value = Redacted.value(id)
      if (!SESSION_ID.test(value)) return yield* invalid("The console session is not valid; sign in again.")
      const rows = yield* db.read(
        "console_sessions.find", sql<{ expires_at: string }>`SELECT expires_at FROM console_sessions WHERE id_hash = ${sha256Hex(value)}`
      )
      const row = rows[0]
      if (row === undefined) return yield* invalid("The console session is not valid; sign in again.")
      if (Date.parse(row.expires_at) <= (yield* Clock.currentTimeMillis)) {
        return yield* new Unauthenticated({ code: "AUTH_EXPIRED", detail: "The console session has expired; sign in again." })
      }
      return { id, expiresAt: row.expires_at } satisfies ConsoleSession
    })

    const signOut = Effect.fn("ConsoleSessions.signOut")(function*(id: Redacted.Redacted<string>) {
      yield* db.write("console_sessions.sign_out", sql`DELETE FROM console_sessions WHERE id_hash = ${sha256Hex(Redacted.value(id))}`)
    })

    return { signIn, check, signOut } as const
  })
}) {}
