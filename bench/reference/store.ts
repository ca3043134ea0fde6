/**
 * The database work of both reference servers: one module, so that the raw floor and the Hono
 * server differ only in their HTTP layer. It is written the way a careful user of `bun:sqlite`
 * would write it: WAL, prepared statements made once, one transaction per write. The tables have
 * the shape of Bulwark's (keys stored as SHA-256 hex, sessions keyed by tenant and id).
 */
import { Database } from "bun:sqlite"

const SCHEMA = `
  CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    allowed_agents TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
  );
  CREATE TABLE sessions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    title TEXT,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
  );
  CREATE TABLE messages (
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
  );
`

export interface Caller {
  readonly tenantId: string
  readonly allowedAgents: ReadonlyArray<string>
}

export interface Session {
  readonly id: string
  readonly title: string | null
  readonly metadata: Record<string, unknown>
  readonly created_at: string
  readonly updated_at: string
}

export interface Message {
  readonly id: string
  readonly session_id: string
  readonly seq: number
  readonly agent_id: string
  readonly content: string
  readonly metadata: Record<string, unknown>
  readonly created_at: string
}

export interface NewMessage {
  readonly agentId: string
  readonly content: string
  readonly metadata: Record<string, unknown>
}

export const hashApiKey = (apiKey: string): string => new Bun.CryptoHasher("sha256").update(apiKey).digest("hex")

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export const isUuid = (value: string): boolean => UUID.test(value)

/** `Bearer <key>` → the key, or null for anything else. */
export const bearerOf = (authorization: string | null | undefined): string | null =>
  authorization !== null && authorization !== undefined && authorization.startsWith("Bearer ")
    ? authorization.slice("Bearer ".length)
    : null

export const mayPostAs = (caller: Caller, agentId: string): boolean =>
  caller.allowedAgents.includes("*") || caller.allowedAgents.includes(agentId)

/** An RFC 9457 body like Bulwark's, so every target answers a failure with the same amount of work. */
export const problemBody = (status: number, code: string, title: string, detail: string) => {
  const errorId = crypto.randomUUID()
  return { type: `/problems/${code.toLowerCase().replaceAll("_", "-")}`, title, status, detail, instance: `urn:uuid:${errorId}`, code, error_id: errorId }
}

const openDatabase = (path: string): Database => {
  const db = new Database(path, { create: true, strict: true })
  db.exec("PRAGMA journal_mode = WAL")
  db.exec("PRAGMA synchronous = NORMAL")
  db.exec("PRAGMA busy_timeout = 25")
  db.exec("PRAGMA foreign_keys = ON")
  return db
}

export interface Seed {
  readonly apiKey: string
  readonly sessionId: string
}

/** Creates the schema, one tenant, one key allowed to post as any agent, and one session. */
export const seedDatabase = (path: string, seed: Seed): void => {
  const db = openDatabase(path)
  const now = new Date().toISOString()
  const tenantId = crypto.randomUUID()
  db.transaction(() => {
    db.exec(SCHEMA)
    db.query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)").run(tenantId, "bench", now)
    db.query("INSERT INTO api_keys (id, tenant_id, key_hash, allowed_agents, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(crypto.randomUUID(), tenantId, hashApiKey(seed.apiKey), JSON.stringify(["*"]), now)
    db.query("INSERT INTO sessions (tenant_id, id, title, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run(tenantId, seed.sessionId, "bench", "{}", now, now)
  })()
  db.close()
}

interface SessionRow {
  readonly id: string
  readonly title: string | null
  readonly metadata: string
  readonly created_at: string
  readonly updated_at: string
}

export type Store = ReturnType<typeof openStore>

export const openStore = (path: string) => {
  const db = openDatabase(path)
  const keyByHash = db.query<{ tenant_id: string; allowed_agents: string }, [string]>(
    "SELECT tenant_id, allowed_agents FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
  )
  const sessionById = db.query<SessionRow, [string, string]>(
    "SELECT id, title, metadata, created_at, updated_at FROM sessions WHERE tenant_id = ? AND id = ?"
  )
  const sessionExists = db.query<{ found: number }, [string, string]>("SELECT 1 AS found FROM sessions WHERE tenant_id = ? AND id = ?")
  const nextSeq = db.query<{ seq: number }, [string, string]>(
    "SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM messages WHERE tenant_id = ? AND session_id = ?"
  )
  const insertMessage = db.query(
    `INSERT INTO messages (tenant_id, session_id, seq, id, agent_id, content, metadata, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
  )

  const callerOf = (apiKey: string): Caller | null => {
    const row = keyByHash.get(hashApiKey(apiKey))
    return row === null ? null : { tenantId: row.tenant_id, allowedAgents: JSON.parse(row.allowed_agents) as Array<string> }
  }

  const findSession = (tenantId: string, id: string): Session | null => {
    const row = sessionById.get(tenantId, id)
    return row === null ? null : { ...row, metadata: JSON.parse(row.metadata) as Record<string, unknown> }
  }

  /** seq is the session's previous maximum + 1, read and written in one immediate transaction. */
  const appendInTransaction = db.transaction((tenantId: string, sessionId: string, message: NewMessage): Message | null => {
    if (sessionExists.get(tenantId, sessionId) === null) return null
    const seq = nextSeq.get(tenantId, sessionId)?.seq ?? 1
    const stored: Message = {
      id: crypto.randomUUID(),
      session_id: sessionId,
      seq,
      agent_id: message.agentId,
      content: message.content,
      metadata: message.metadata,
      created_at: new Date().toISOString()
    }
    insertMessage.run(tenantId, sessionId, seq, stored.id, stored.agent_id, stored.content, JSON.stringify(stored.metadata), stored.created_at)
    return stored
  })

  const appendMessage = (tenantId: string, sessionId: string, message: NewMessage): Message | null =>
    appendInTransaction.immediate(tenantId, sessionId, message)

  return { callerOf, findSession, appendMessage } as const
}

/** Reads `{ agent_id, content, metadata? }`; null when the body does not have that shape. */
export const parseNewMessage = (body: unknown): NewMessage | null => {
  if (typeof body !== "object" || body === null) return null
  const { agent_id, content, metadata } = body as Record<string, unknown>
  if (typeof agent_id !== "string" || agent_id.length === 0 || typeof content !== "string") return null
  if (metadata !== undefined && (typeof metadata !== "object" || metadata === null || Array.isArray(metadata))) return null
  return { agentId: agent_id, content, metadata: (metadata ?? {}) as Record<string, unknown> }
}

/** PORT and BENCH_DB, as the harness passes them. */
export const serverEnv = (): { readonly port: number; readonly dbPath: string } => {
  const port = Number(process.env["PORT"])
  const dbPath = process.env["BENCH_DB"]
  if (!Number.isInteger(port) || port <= 0 || dbPath === undefined || dbPath === "") {
    console.error("reference server: set PORT (a port number) and BENCH_DB (a seeded SQLite file)")
    process.exit(1)
  }
  return { port, dbPath }
}
