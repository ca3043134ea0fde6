/**
 * What lets a process keep what it read from the database in memory (SPEC §8: a key revoked through
 * one instance is refused by every instance within 1 s, also while the channel that carries the
 * news is down). The interface says what a copy needs to know; each database says how:
 * - SQLite: `PRAGMA data_version`, read on two connections: a probe's, which moves on every commit,
 *   and the served connection's, which moves only for other connections' commits (`fromSqlite`);
 * - a shared server database (PostgreSQL): a generation row the changing transaction bumps, read
 *   by each instance every `interval` (`polled`). The database is the channel, so no notification
 *   can be lost, and an instance that has not read it lately trusts nothing it kept.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Context, Duration, Effect, type Either, Layer, Metric, Schedule, type Scope } from "effect"
import { keptKeysTrusted } from "../../src/telemetry/Metrics.js"
import * as Supervised from "../resilience/Supervised.js"

/**
 * A mark is a number that moves when what was read under it may have changed; `undefined` means
 * this process cannot tell right now, and nothing kept may be trusted. Both are read on every
 * authenticated request: synchronous, cheap, and given the clock's `now` rather than reading it.
 */
export interface ChangeSignalShape {
  /** Moves whenever an API key may have changed (revoked, deleted, its tokens revoked). */
  readonly keys: (now: number) => number | undefined
  /** Moves whenever anything in the database may have changed; `undefined` where that cannot be told cheaply. */
  readonly anything: (now: number) => number | undefined
  /** Run inside the transaction that changes a key, so that the news commits with the change. */
  readonly keysChanged: Effect.Effect<void, SqlError>
}

export class ChangeSignal extends Context.Tag("bulwark/ChangeSignal")<ChangeSignal, ChangeSignalShape>() {}

/**
 * SQLite, from two counters. `anything`: `dataVersion`, read on a connection of its own, which moves
 * on every commit, this process's own included. `keys`: the served connection's own counter
 * (`commitsElsewhere`), which moves only for other connections' commits (another process, the CLI,
 * a raw change by hand), plus the count of this process's own key changes (`keysChanged`, run inside
 * each transaction that changes a key). So this process's own writes (every message post) leave the
 * kept keys trusted, and any commit elsewhere, or a key change here, does not.
 *
 * A change here is counted before its commit; a request that reads the key meanwhile waits for the
 * connection, so whether it reads under the old mark or the new, it reads the committed key, and
 * under the old mark it is read again at once.
 */
export const fromSqlite = (counters: {
  readonly dataVersion: () => Either.Either<number, SqlError>
  readonly commitsElsewhere: () => number | undefined
}): ChangeSignalShape => {
  let keyChangesHere = 0
  const anything = () => {
    const version = counters.dataVersion()
    return version._tag === "Right" ? version.right : undefined
  }
  const keys = () => {
    const elsewhere = counters.commitsElsewhere()
    return elsewhere === undefined ? undefined : elsewhere + keyChangesHere
  }
  return {
    keys,
    anything,
    keysChanged: Effect.sync(() => {
      keyChangesHere += 1
    })
  }
}

export interface PolledOptions {
  /** How often the generation is read. */
  readonly interval: Duration.DurationInput
  /**
   * How long a read vouches for the copies, from the moment it was sent. With `interval` it bounds
   * how late a revocation is seen: a revocation committed after a read was sent is seen by the next
   * read, or the copies stop being trusted `trustFor` after the last read that succeeded.
   */
  readonly trustFor: Duration.DurationInput
}

export const defaultPolled: PolledOptions = { interval: "250 millis", trustFor: "750 millis" }

const KEYS = "api_keys"

/** The generation row's table (migration `0007_shared_marks_and_counts`): one row per kind of change. */
export const polled = (options: PolledOptions = defaultPolled): Effect.Effect<ChangeSignalShape, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const interval = Duration.decode(options.interval)
    const trustMillis = Duration.toMillis(options.trustFor)
    let generation: number | undefined
    let heardAt = Number.NEGATIVE_INFINITY
    let lost = false

    const read = Effect.gen(function*() {
      const sentAt = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const rows = yield* sql<{ generation: number | string }>`SELECT generation FROM change_marks WHERE name = ${KEYS}`.pipe(
        // A read slower than its trust is of no use; at start the first read may take a while.
        Effect.timeoutFail({ duration: options.trustFor, onTimeout: () => new Cause.TimeoutException("the change generation was not read in time") })
      )
      const row = rows[0]
      if (row === undefined) return yield* Effect.fail(new Cause.NoSuchElementException("the change_marks row of api_keys is missing"))
      generation = Number(row.generation)
      heardAt = sentAt
      if (lost) {
        lost = false
        yield* Effect.logInfo("the change generation is read again; kept API keys are trusted again")
      }
    })
    // Never dies quietly: a failed read is logged once per loss, and the loop goes on.
    const readOrReport = Effect.catchAllCause(read, (cause) => {
      if (lost) return Effect.void
      lost = true
      return Effect.logWarning("cannot read the change generation; kept API keys are not trusted until it is read again").pipe(
        Effect.annotateLogs({ cause: Cause.pretty(cause) })
      )
    })
    const keys = (now: number) => (now - heardAt < trustMillis ? generation : undefined)
    // Set after each read: trust lapses by time alone, so the gauge follows the reads that keep it.
    const reportTrust = Effect.clockWith((clock) =>
      Effect.flatMap(clock.currentTimeMillis, (now) => Metric.set(keptKeysTrusted, keys(now) === undefined ? 0 : 1))
    )
    yield* Effect.zipRight(readOrReport, reportTrust).pipe(
      Effect.repeat(Schedule.spaced(interval)),
      Supervised.loop("change-signal-poller"),
      Effect.forkScoped
    )

    return { keys, anything: () => undefined, keysChanged: bumpKeys(sql) } satisfies ChangeSignalShape
  })

const bumpKeys = (sql: SqlClient.SqlClient) => Effect.asVoid(sql`UPDATE change_marks SET generation = generation + 1 WHERE name = ${KEYS}`)

/**
 * For a process that changes keys but keeps no copies (the CLI): it bumps the generation that the
 * servers poll, and reads nothing, so it trusts nothing and runs no loop.
 */
export const announcingLayer = Layer.effect(
  ChangeSignal,
  Effect.map(SqlClient.SqlClient, (sql): ChangeSignalShape => ({ keys: () => undefined, anything: () => undefined, keysChanged: bumpKeys(sql) }))
)

export const polledLayer = (options?: PolledOptions) => Layer.scoped(ChangeSignal, polled(options))
