/**
 * The console's only way out: the documented admin API, on this origin, with the session cookie
 * (sent by the browser; the page never sees it). Every failure is the server's problem body.
 */

export interface Problem {
  readonly status: number
  readonly code: string
  readonly detail: string
  readonly error_id?: string
  readonly retry_after_seconds?: number
}

export class ApiFailure extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.code}: ${problem.detail}`)
  }
}

export interface SessionInfo {
  readonly signed_in_with: string
  readonly expires_at: string | null
  readonly trace_url: string | null
}

export interface ErrorGroup {
  readonly fingerprint: string
  readonly code: string
  readonly status: number
  readonly type: string
  readonly route: string | null
  readonly severity: string
  readonly count: number
  readonly first_seen: string
  readonly last_seen: string
  readonly last_error_id: string
  readonly unresolved_count: number
  readonly trend: ReadonlyArray<number>
}

export interface ErrorRecord {
  readonly error_id: string
  readonly occurred_at: string
  readonly type: string
  readonly code: string
  readonly status: number
  readonly message: string
  readonly stack: string | null
  readonly fingerprint: string
  readonly severity: string
  readonly tenant_id: string | null
  readonly session_id: string | null
  readonly request_id: string | null
  readonly trace_id: string | null
  readonly method: string | null
  readonly route: string | null
  readonly user_agent: string | null
  readonly request_payload: unknown
  readonly request_payload_kind: string | null
  readonly resolved: boolean
  readonly resolved_at: string | null
  readonly notes: string | null
}

export interface DependencyHealth {
  readonly status: string
  readonly breaker: string
  readonly latency_ms: number | null
}

export interface HealthReport {
  readonly status: string
  readonly dependencies?: Record<"database" | "cache" | "memory", DependencyHealth>
}

export interface RatePoint {
  readonly minute: string
  readonly requests: number
  readonly errors: number
}

export type Dependency = "database" | "cache" | "memory"
export type BreakerAction = "open" | "close" | "disable"

const call = async <A>(method: string, path: string, body?: unknown): Promise<A> => {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: body === undefined ? { accept: "application/json" } : { accept: "application/json", "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  if (response.status === 204) return undefined as A
  const text = await response.text()
  const parsed: unknown = text === "" ? undefined : JSON.parse(text)
  // `/health` answers 503 with the report in its problem body when the database cannot serve.
  if (!response.ok) throw new ApiFailure(parsed as Problem)
  return parsed as A
}

const query = (params: Record<string, string | undefined>) => {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== "") search.set(name, value)
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

export const api = {
  session: () => call<SessionInfo>("GET", "/v1/console/session"),
  signIn: (adminToken: string) => call<SessionInfo>("POST", "/v1/console/session", { admin_token: adminToken }),
  signOut: () => call<void>("DELETE", "/v1/console/session"),
  groups: (filters: Record<string, string | undefined>) =>
    call<{ data: Array<ErrorGroup> }>("GET", `/v1/admin/errors/groups${query(filters)}`).then((page) => page.data),
  resolveGroup: (fingerprint: string, notes: string) =>
    call<ErrorGroup>("POST", `/v1/admin/errors/groups/${encodeURIComponent(fingerprint)}/resolve`, notes === "" ? {} : { notes }),
  error: (errorId: string) => call<ErrorRecord>("GET", `/v1/admin/errors/${encodeURIComponent(errorId)}`),
  resolveError: (errorId: string, notes: string) =>
    call<ErrorRecord>("POST", `/v1/admin/errors/${encodeURIComponent(errorId)}/resolve`, notes === "" ? {} : { notes }),
  health: async (): Promise<HealthReport> => {
    try {
      return await call<HealthReport>("GET", "/health")
    } catch (error) {
      const health = error instanceof ApiFailure ? (error.problem as Problem & { health?: HealthReport }).health : undefined
      if (health !== undefined) return health
      throw error
    }
  },
  setBreaker: (dependency: Dependency, action: BreakerAction) => call<unknown>("POST", `/v1/admin/breakers/${dependency}`, { action }),
  rates: () => call<{ data: Array<RatePoint> }>("GET", "/v1/admin/rates").then((page) => page.data)
}

/** What to tell the operator of a failed call, with the error_id to quote. */
export const describeFailure = (error: unknown): string => {
  if (error instanceof ApiFailure) {
    const { code, detail, error_id, retry_after_seconds } = error.problem
    const retry = retry_after_seconds === undefined ? "" : ` Retry in ${retry_after_seconds} s.`
    return `${code}: ${detail}${retry}${error_id === undefined ? "" : ` (error_id ${error_id})`}`
  }
  return error instanceof Error ? `The server could not be reached (${error.message}).` : "The server could not be reached."
}

export const isSignedOut = (error: unknown): boolean => error instanceof ApiFailure && error.problem.status === 401
