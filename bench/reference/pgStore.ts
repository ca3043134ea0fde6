/**
 * The database work of both reference servers on PostgreSQL, through Bun's own client (`Bun.SQL`),
 * written the way a careful user of it would: a pool as large as Bulwark's (10), statements prepared
 * by the client, and the message append in one round trip that holds the session's row lock only for
 * that statement (bump the session's `last_seq`, insert the row with it), which keeps `seq` gapless
 * across processes. Tables have the shape of the SQLite store's, in PostgreSQL's own types.
 */
import { SQL } from "bun"
import { type Caller, hashApiKey, type Message, type NewMessage, type Seed, type Session } from "./store.js"

/** The same as Bulwark's default `BULWARK_DB_POOL_SIZE`, so both sides get as many connections. */
export const POOL_SIZE = 10

const SCHEMA = `
  CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
  );
  CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash text NOT NULL UNIQUE,
    allowed_agents jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
  );
  CREATE TABLE sessions (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id text NOT NULL,
    title text,
    metadata jsonb NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
  );
  CREATE TABLE messages (
    tenant_id text NOT NULL,
    session_id text NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL UNIQUE,
    agent_id text NOT NULL,
    content text NOT NULL,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
  );
`

/** Creates the schema, one tenant, one key allowed to post as any agent, and one session. */
export const seedPostgres = async (url: string, seed: Seed): Promise<void> => {
  const sql = new SQL({ url, max: 1 })
  try {
    const tenantId = crypto.randomUUID()
    const now = new Date()
    await sql.begin(async (tx) => {
      await tx.unsafe(SCHEMA)
      await tx`INSERT INTO tenants (id, name, created_at) VALUES (${tenantId}, 'bench', ${now})`
      await tx`INSERT INTO api_keys (id, tenant_id, key_hash, allowed_agents, created_at)
               VALUES (${crypto.randomUUID()}, ${tenantId}, ${hashApiKey(seed.apiKey)}, ${JSON.stringify(["*"])}::jsonb, ${now})`
      await tx`INSERT INTO sessions (tenant_id, id, title, metadata, created_at, updated_at)
               VALUES (${tenantId}, ${seed.sessionId}, 'bench', '{}'::jsonb, ${now}, ${now})`
    })
  } finally {
    await sql.close()
  }
}

interface SessionRow {
  readonly id: string
  readonly title: string | null
  readonly metadata: Record<string, unknown>
  readonly created_at: Date
  readonly updated_at: Date
}

export type PgStore = ReturnType<typeof openPgStore>

export const openPgStore = (url: string) => {
  const sql = new SQL({ url, max: POOL_SIZE })

  const callerOf = async (apiKey: string): Promise<Caller | null> => {
    const [row] = await sql<Array<{ tenant_id: string; allowed_agents: Array<string> }>>`
      SELECT tenant_id, allowed_agents FROM api_keys WHERE key_hash = ${hashApiKey(apiKey)} AND revoked_at IS NULL`
    return row === undefined ? null : { tenantId: row.tenant_id, allowedAgents: row.allowed_agents }
  }

  const findSession = async (tenantId: string, id: string): Promise<Session | null> => {
    const [row] = await sql<Array<SessionRow>>`
      SELECT id, title, metadata, created_at, updated_at FROM sessions WHERE tenant_id = ${tenantId} AND id = ${id}`
    return row === undefined
      ? null
      : { id: row.id, title: row.title, metadata: row.metadata, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
  }

  /** No row back means no such session for this tenant (the UPDATE matched nothing, so nothing was inserted). */
  const appendMessage = async (tenantId: string, sessionId: string, message: NewMessage): Promise<Message | null> => {
    const id = crypto.randomUUID()
    const [row] = await sql<Array<{ seq: string; created_at: Date }>>`
      WITH bumped AS (
        UPDATE sessions SET last_seq = last_seq + 1 WHERE tenant_id = ${tenantId} AND id = ${sessionId} RETURNING last_seq
      )
      INSERT INTO messages (tenant_id, session_id, seq, id, agent_id, content, metadata, created_at)
      SELECT ${tenantId}, ${sessionId}, last_seq, ${id}, ${message.agentId}, ${message.content}, ${JSON.stringify(message.metadata)}::jsonb, now()
      FROM bumped
      RETURNING seq, created_at`
    return row === undefined
      ? null
      : {
        id,
        session_id: sessionId,
        seq: Number(row.seq),
        agent_id: message.agentId,
        content: message.content,
        metadata: message.metadata,
        created_at: row.created_at.toISOString()
      }
  }

  return { callerOf, findSession, appendMessage } as const
}

/** PORT and BENCH_DATABASE_URL, as the harness passes them. */
export const pgServerEnv = (): { readonly port: number; readonly databaseUrl: string } => {
  const port = Number(process.env["PORT"])
  const databaseUrl = process.env["BENCH_DATABASE_URL"]
  if (!Number.isInteger(port) || port <= 0 || databaseUrl === undefined || !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    console.error("reference server: set PORT (a port number) and BENCH_DATABASE_URL (postgres://..., a seeded database)")
    process.exit(1)
  }
  return { port, databaseUrl }
}
