/**
 * Schema migrations through `@effect/sql`'s migrator, run at start. The SQL is kept portable
 * between SQLite and PostgreSQL: TEXT ids and RFC 3339 timestamps, INTEGER flags, JSON as TEXT.
 */
import { Migrator } from "@effect/sql"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const migrations = {
  "0001_tenants_keys_sessions": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE tenants (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      created_at TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE api_keys (
      id TEXT PRIMARY KEY,
      tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
      name TEXT,
      key_hash TEXT NOT NULL UNIQUE,
      allowed_agents TEXT NOT NULL,
      is_admin INTEGER NOT NULL DEFAULT 0,
      token_version INTEGER NOT NULL DEFAULT 0,
      created_at TEXT NOT NULL,
      revoked_at TEXT
    )`
    yield* sql`CREATE INDEX api_keys_tenant ON api_keys (tenant_id)`
    yield* sql`CREATE TABLE sessions (
      tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
      id TEXT NOT NULL,
      title TEXT,
      metadata TEXT NOT NULL,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL,
      PRIMARY KEY (tenant_id, id)
    )`
    yield* sql`CREATE INDEX sessions_tenant_created ON sessions (tenant_id, created_at, id)`
  }),
  "0002_error_ledger": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE errors (
      error_id TEXT PRIMARY KEY,
      occurred_at TEXT NOT NULL,
      type TEXT NOT NULL,
      code TEXT NOT NULL,
      status INTEGER NOT NULL,
      message TEXT NOT NULL,
      stack TEXT,
      fingerprint TEXT NOT NULL,
      severity TEXT NOT NULL,
      tenant_id TEXT,
      session_id TEXT,
      request_id TEXT,
      trace_id TEXT,
      method TEXT,
      route TEXT,
      user_agent TEXT,
      request_payload TEXT,
      resolved INTEGER NOT NULL DEFAULT 0,
      resolved_at TEXT,
      notes TEXT
    )`
    yield* sql`CREATE INDEX errors_occurred ON errors (occurred_at)`
    yield* sql`CREATE INDEX errors_code ON errors (code, occurred_at)`
    yield* sql`CREATE INDEX errors_type ON errors (type, occurred_at)`
    yield* sql`CREATE INDEX errors_severity ON errors (severity, occurred_at)`
    yield* sql`CREATE INDEX errors_session ON errors (session_id, occurred_at)`
    yield* sql`CREATE INDEX errors_resolved ON errors (resolved, occurred_at)`
    yield* sql`CREATE INDEX errors_fingerprint ON errors (fingerprint)`
  }),
  "0003_idempotency_keys": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE idempotency_keys (
      scope TEXT NOT NULL,
      key TEXT NOT NULL,
      request_hash TEXT NOT NULL,
      response TEXT NOT NULL,
      created_at TEXT NOT NULL,
      PRIMARY KEY (scope, key)
    )`
    yield* sql`CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)`
  }),
  /**
   * Messages and memory belong to a session: deleting it deletes them in the same statement. A
   * message's `seq` comes from its session's `last_seq`, bumped in the transaction that inserts
   * the message, so concurrent posters get 1, 2, 3, ... without gaps or repeats on any database.
   */
  "0004_messages_memory": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE sessions ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0`
    yield* sql`CREATE TABLE messages (
      tenant_id TEXT NOT NULL,
      session_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      id TEXT NOT NULL UNIQUE,
      agent_id TEXT NOT NULL,
      content TEXT NOT NULL,
      metadata TEXT NOT NULL,
      created_at TEXT NOT NULL,
      PRIMARY KEY (tenant_id, session_id, seq),
      FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
    )`
    yield* sql`CREATE TABLE memory (
      tenant_id TEXT NOT NULL,
      session_id TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      expires_at TEXT,
      updated_at TEXT NOT NULL,
      PRIMARY KEY (tenant_id, session_id, key),
      FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
    )`
    yield* sql`CREATE INDEX memory_expires ON memory (expires_at) WHERE expires_at IS NOT NULL`
  }),
  /**
   * Every error response writes a ledger row, and each index costs that write about 5 µs (measured
   * with 100-row batches): with seven it cost more than the whole request it recorded. Kept: the
   * time (newest first, `since`, retention), `code` and `session_id`, which pick few rows out of
   * many. Dropped: `fingerprint` (no query uses it) and the few-valued `type`, `severity` and
   * `resolved`, whose filters walk the time index newest first and stop at the page's limit.
   */
  "0005_ledger_write_cost": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DROP INDEX errors_fingerprint`
    yield* sql`DROP INDEX errors_type`
    yield* sql`DROP INDEX errors_severity`
    yield* sql`DROP INDEX errors_resolved`
  }),
  /**
   * What the ledger kept of a request body: `json`, `truncated`, `text` or `binary` (see
   * `sanitizePayload`), so the payload is read back as what it is. Rows from before have none.
   */
  "0006_ledger_payload_kind": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE errors ADD COLUMN request_payload_kind TEXT`
  }),
  /**
   * What instances on a shared server database share through it: one generation per kind of change,
   * bumped by the transaction that makes the change and read by every instance (`ChangeSignal.polled`),
   * and the rate limits' counts per bucket and window, taken in leases (`services/RateCounts.ts`).
   */
  "0007_shared_marks_and_counts": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE change_marks (
      name TEXT PRIMARY KEY,
      generation BIGINT NOT NULL
    )`
    yield* sql`INSERT INTO change_marks (name, generation) VALUES ('api_keys', 0)`
    yield* sql`CREATE TABLE rate_counts (
      bucket TEXT PRIMARY KEY,
      window_index BIGINT NOT NULL,
      taken BIGINT NOT NULL
    )`
  }),
  /**
   * Operators' console sign-ins (SPEC §12): only the SHA-256 of the cookie's value is kept, so a
   * copy of the table opens no session; a row is a session until it expires or is signed out.
   */
  "0008_console_sessions": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE console_sessions (
      id_hash TEXT PRIMARY KEY,
      created_at TEXT NOT NULL,
      expires_at TEXT NOT NULL
    )`
    yield* sql`CREATE INDEX console_sessions_expires ON console_sessions (expires_at)`
  })
}

const MIGRATIONS_TABLE = "effect_sql_migrations"

/**
 * The migrator takes `LOCK TABLE` on its table before it applies anything, so on PostgreSQL instances
 * starting together apply each migration once; but it creates that table first, unlocked, and two
 * instances racing on a fresh database would both try. The table is created here under an advisory
 * lock, in the migrator's own shape.
 */
const migrationsTableReady = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.onDialectOrElse({
    pg: () =>
      sql.withTransaction(
        Effect.zipRight(
          sql`SELECT pg_advisory_xact_lock(hashtext(${MIGRATIONS_TABLE}))`,
          sql`CREATE TABLE IF NOT EXISTS ${sql(MIGRATIONS_TABLE)} (
            migration_id integer primary key,
            created_at timestamp with time zone not null default now(),
            name text not null
          )`
        )
      ),
    orElse: () => Effect.void
  })
})

export const run = Effect.zipRight(
  migrationsTableReady,
  Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: MIGRATIONS_TABLE })
)
