/**
 * PostgreSQL for scale-out (SPEC §8): many instances share one server. The pool is reached through
 * `@effect/sql` (`BunPgClient`), so repositories stay dialect-free. Reaching the server is checked
 * at start and retried for a few seconds (SPEC §5); an unreachable or refusing server then stops the
 * start with one line naming `DATABASE_URL`.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Duration, Effect, Layer, type Redacted, Schedule } from "effect"
import { StartupError } from "../../../src/Config.js"
import { classifyDriverError } from "../errors.js"
import * as BunPgClient from "./BunPgClient.js"

export interface PostgresOptions {
  readonly url: Redacted.Redacted<string>
  readonly poolSize: number
  /** How long the start keeps trying to reach the server before it gives up. */
  readonly connectRetryFor?: Duration.DurationInput
}

/** The driver's pool, for what `SqlClient` does not cover (notifications, closing). */
export class PostgresPool extends Context.Tag("bulwark/Postgres/Pool")<PostgresPool, BunPgClient.BunPgClient>() {}

/** Only a server that may yet come (refused, reset, starting up, too many connections) is waited for. */
const mayComeUp = (error: SqlError) => {
  const fault = classifyDriverError(error)
  return fault._tag === "Operational" && fault.transient
}

export const layer = (options: PostgresOptions): Layer.Layer<SqlClient.SqlClient | PostgresPool, StartupError> => {
  const retryFor = Duration.decode(options.connectRetryFor ?? "5 seconds")
  return Layer.scopedContext(
    Effect.gen(function*() {
      const client = yield* BunPgClient.make({
        url: options.url,
        maxConnections: options.poolSize,
        connectTimeoutSeconds: 2,
        idleTimeoutSeconds: 60,
        applicationName: "bulwark"
      })
      yield* client.sql`SELECT 1`.pipe(
        Effect.retry({
          schedule: Schedule.exponential("100 millis", 2).pipe(
            Schedule.union(Schedule.spaced("1 second")),
            Schedule.upTo(retryFor)
          ),
          while: mayComeUp
        }),
        Effect.mapError((error) => new StartupError("DATABASE_URL", `cannot reach PostgreSQL (${BunPgClient.describeDriverError(error.cause)})`))
      )
      return Context.make(SqlClient.SqlClient, client.sql).pipe(Context.add(PostgresPool, client))
    })
  ).pipe(Layer.provide(Reactivity.layer))
}
