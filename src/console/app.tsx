/**
 * The operators' console (SPEC §12): error groups with their trend, an error's whole record at
 * `/console/errors/{error_id}`, resolving with notes, the dependencies and their breakers, request
 * and error rates over the last hour. It refreshes itself every few seconds and calls nothing but
 * the documented admin API (./api.ts).
 */
import { render } from "preact"
import { useCallback, useEffect, useRef, useState } from "preact/hooks"
import {
  api,
  type BreakerAction,
  type Dependency,
  describeFailure,
  type ErrorGroup,
  type ErrorRecord,
  type HealthReport,
  isSignedOut,
  type RatePoint,
  type SessionInfo
} from "./api.js"

/** SPEC §12 asks for at most 5 s between refreshes. */
const REFRESH_MILLIS = 3000
const HOUR_MILLIS = 3_600_000
const ERROR_PATH = /^\/console\/errors\/([0-9a-fA-F-]{36})\/?$/

const sinceOptions = [
  ["", "All time"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"]
] as const
const sinceMillis: Record<string, number> = { "1h": HOUR_MILLIS, "24h": 24 * HOUR_MILLIS, "7d": 7 * 24 * HOUR_MILLIS }

const types = ["http", "stream", "mcp", "database", "cache", "memory", "validation", "auth", "internal"]
const severities = ["critical", "error", "warning"]

const ago = (iso: string, now: number): string => {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (seconds < 60) return `${seconds} s ago`
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} h ago`
  return `${Math.round(seconds / 86_400)} d ago`
}

const Time = ({ iso, now }: { iso: string; now: number }) => <time dateTime={iso} title={iso}>{ago(iso, now)}</time>

/** Runs `load` now and every few seconds while mounted; `onSignedOut` when the session is gone. */
const usePolling = <A,>(load: () => Promise<A>, keys: ReadonlyArray<unknown>, onSignedOut: () => void) => {
  const [state, setState] = useState<{ data?: A; error?: string; at?: number }>({})
  const refresh = useCallback(() => {
    load().then(
      (data) => setState({ data, at: Date.now() }),
      (error) => (isSignedOut(error) ? onSignedOut() : setState((previous) => ({ ...previous, error: describeFailure(error) })))
    )
  }, keys)
  useEffect(() => {
    refresh()
    const timer = setInterval(refresh, REFRESH_MILLIS)
    return () => clearInterval(timer)
  }, [refresh])
  return { ...state, refresh }
}

interface Confirmation {
  readonly title: string
  readonly message: string
  readonly confirmLabel: string
  readonly withNotes: boolean
  readonly run: (notes: string) => Promise<unknown>
}

/** A modal `<dialog>`: focus moves into it, Escape cancels, and nothing happens until Confirm. */
const ConfirmDialog = ({ confirmation, onDone }: { confirmation: Confirmation; onDone: () => void }) => {
  const dialog = useRef<HTMLDialogElement>(null)
  const [notes, setNotes] = useState("")
  const [failure, setFailure] = useState<string | undefined>()
  const [busy, setBusy] = useState(false)
  useEffect(() => {
    dialog.current?.showModal()
  }, [])
  const confirm = async (event: Event) => {
    event.preventDefault()
    setBusy(true)
    try {
      await confirmation.run(notes)
      dialog.current?.close()
      onDone()
    } catch (error) {
      setFailure(describeFailure(error))
      setBusy(false)
    }
  }
  return (
    <dialog ref={dialog} aria-labelledby="confirm-title" onClose={onDone}>
      <form onSubmit={confirm}>
        <h2 id="confirm-title">{confirmation.title}</h2>
        <p>{confirmation.message}</p>
        {confirmation.withNotes && (
          <label>
            Notes
            <textarea name="notes" rows={3} maxLength={4096} value={notes} onInput={(e) => setNotes(e.currentTarget.value)} />
          </label>
        )}
        {failure !== undefined && <p role="alert" class="failure">{failure}</p>}
        <div class="actions">
          <button type="button" onClick={() => dialog.current?.close()}>Cancel</button>
          <button type="submit" class="primary" disabled={busy}>{confirmation.confirmLabel}</button>
        </div>
      </form>
    </dialog>
  )
}

const SignIn = ({ onSignedIn }: { onSignedIn: (session: SessionInfo) => void }) => {
  const field = useRef<HTMLInputElement>(null)
  const [failure, setFailure] = useState<string | undefined>()
  const [busy, setBusy] = useState(false)
  useEffect(() => field.current?.focus(), [])
  const submit = async (event: Event) => {
    event.preventDefault()
    const input = field.current
    if (input === null || input.value === "") return
    // The token leaves the page at once: it is sent, and the field is emptied before the answer.
    const token = input.value
    input.value = ""
    setBusy(true)
    try {
      onSignedIn(await api.signIn(token))
    } catch (error) {
      setFailure(describeFailure(error))
      setBusy(false)
      input.focus()
    }
  }
  return (
    <main class="sign-in">
      <h1>Bulwark console</h1>
      <form onSubmit={submit}>
        <label for="admin-token">Admin token</label>
        <input id="admin-token" name="admin-token" type="password" autocomplete="off" spellcheck={false} required ref={field} />
        <button type="submit" class="primary" disabled={busy}>Sign in</button>
        {failure !== undefined && <p role="alert" class="failure">{failure}</p>}
      </form>
      <p class="hint">The token is exchanged for a session cookie; it is not kept by this page.</p>
    </main>
  )
}

const Trend = ({ counts, label }: { counts: ReadonlyArray<number>; label: string }) => {
  const max = Math.max(1, ...counts)
  return (
    <svg class="trend" viewBox={`0 0 ${counts.length * 4} 20`} role="img" aria-label={label} preserveAspectRatio="none">
      {counts.map((count, i) => {
        const height = count === 0 ? 0 : Math.max(1, (count / max) * 20)
        return <rect key={i} x={i * 4} y={20 - height} width={3} height={height} />
      })}
    </svg>
  )
}

/** New: first seen within the last hour; growing: more in this hour than in the one before. */
const badgesOf = (group: ErrorGroup, now: number): Array<string> => {
  const badges: Array<string> = []
  if (now - Date.parse(group.first_seen) < HOUR_MILLIS) badges.push("new")
  const [previous = 0, current = 0] = group.trend.slice(-2)
  if (current > previous && previous > 0) badges.push("growing")
  if (group.unresolved_count === 0) badges.push("resolved")
  return badges
}

interface Filters {
  code: string
  type: string
  severity: string
  route: string
  since: string
  resolved: string
}

const emptyFilters: Filters = { code: "", type: "", severity: "", route: "", since: "", resolved: "false" }

const FilterBar = ({ filters, onChange }: { filters: Filters; onChange: (filters: Filters) => void }) => {
  const set = (name: keyof Filters) => (event: Event) =>
    onChange({ ...filters, [name]: (event.currentTarget as HTMLInputElement | HTMLSelectElement).value })
  return (
    <form class="filters" role="search" aria-label="Filter error groups" onSubmit={(e) => e.preventDefault()}>
      <label>
        Code
        <input name="code" value={filters.code} placeholder="SESSION_NOT_FOUND" pattern="[A-Za-z_]{1,64}" onChange={set("code")} />
      </label>
      <label>
        Type
        <select name="type" value={filters.type} onChange={set("type")}>
          <option value="">Any</option>
          {types.map((type) => <option key={type} value={type}>{type}</option>)}
        </select>
      </label>
      <label>
        Severity
        <select name="severity" value={filters.severity} onChange={set("severity")}>
          <option value="">Any</option>
          {severities.map((severity) => <option key={severity} value={severity}>{severity}</option>)}
        </select>
      </label>
      <label>
        Route
        <input name="route" value={filters.route} placeholder="/v1/sessions/:id" onChange={set("route")} />
      </label>
      <label>
        Time range
        <select name="since" value={filters.since} onChange={set("since")}>
          {sinceOptions.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
        </select>
      </label>
      <label>
        Status
        <select name="resolved" value={filters.resolved} onChange={set("resolved")}>
          <option value="false">Unresolved</option>
          <option value="true">Resolved</option>
          <option value="">All</option>
        </select>
      </label>
      <button type="button" onClick={() => onChange(emptyFilters)}>Clear</button>
    </form>
  )
}

const Groups = ({ onSignedOut, navigate, confirm }: Section) => {
  const [filters, setFilters] = useState<Filters>(emptyFilters)
  const groups = usePolling(
    () =>
      api.groups({
        code: filters.code.toUpperCase(),
        type: filters.type,
        severity: filters.severity,
        route: filters.route,
        resolved: filters.resolved,
        since: filters.since === "" ? undefined : new Date(Date.now() - sinceMillis[filters.since]!).toISOString()
      }),
    [filters],
    onSignedOut
  )
  const now = groups.at ?? Date.now()
  return (
    <section aria-labelledby="groups-title">
      <h2 id="groups-title">Error groups</h2>
      <FilterBar filters={filters} onChange={setFilters} />
      {groups.error !== undefined && <p role="alert" class="failure">{groups.error}</p>}
      {groups.data !== undefined && groups.data.length === 0 && <p class="empty">No errors match.</p>}
      {groups.data !== undefined && groups.data.length > 0 && (
        <div class="table-scroll">
          <table class="groups">
            <thead>
              <tr>
                <th scope="col">Error</th>
                <th scope="col">Route</th>
                <th scope="col" class="number">Count</th>
                <th scope="col" class="number">Unresolved</th>
                <th scope="col">Last 24 h</th>
                <th scope="col">First seen</th>
                <th scope="col">Last seen</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {groups.data.map((group) => (
                <tr key={group.fingerprint} data-fingerprint={group.fingerprint} data-code={group.code}>
                  <td>
                    <a href={`/console/errors/${group.last_error_id}`} onClick={navigate}>
                      <span class={`severity ${group.severity}`}>{group.status}</span> {group.code}
                    </a>
                    {badgesOf(group, now).map((badge) => <span key={badge} class={`badge ${badge}`}>{badge}</span>)}
                    <div class="meta">{group.type} · {group.severity}</div>
                  </td>
                  <td class="route" data-label="Route">{group.route ?? "—"}</td>
                  <td class="number count" data-label="Count">{group.count}</td>
                  <td class="number" data-label="Unresolved">{group.unresolved_count}</td>
                  <td data-label="Last 24 h"><Trend counts={group.trend} label={`${group.code}: ${group.trend.at(-1) ?? 0} this hour, ${group.count} in all`} /></td>
                  <td data-label="First seen"><Time iso={group.first_seen} now={now} /></td>
                  <td data-label="Last seen"><Time iso={group.last_seen} now={now} /></td>
                  <td>
                    {group.unresolved_count > 0 && (
                      <button
                        type="button"
                        onClick={() =>
                          confirm({
                            title: `Resolve ${group.code} on ${group.route ?? "no route"}`,
                            message: `Marks the ${group.unresolved_count} unresolved errors of this group resolved. A new one reopens it.`,
                            confirmLabel: "Resolve group",
                            withNotes: true,
                            run: (notes) => api.resolveGroup(group.fingerprint, notes).then(groups.refresh)
                          })}
                      >
                        Resolve…
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}

const dependencies: ReadonlyArray<Dependency> = ["database", "cache", "memory"]
const actions: ReadonlyArray<[BreakerAction, string, string]> = [
  ["open", "Open", "Every call to it fails at once with its 503 until the breaker is closed."],
  ["close", "Close", "Calls go through again and the breaker counts afresh."],
  ["disable", "Disable", "Calls go through and failures are no longer counted: nothing will stop a failing dependency."]
]

const Dependencies = ({ onSignedOut, confirm }: Section) => {
  const health = usePolling<HealthReport>(api.health, [], onSignedOut)
  return (
    <section aria-labelledby="dependencies-title">
      <h2 id="dependencies-title">
        Dependencies {health.data !== undefined && <span class={`status ${health.data.status}`}>{health.data.status}</span>}
      </h2>
      {health.error !== undefined && <p role="alert" class="failure">{health.error}</p>}
      <ul class="dependencies">
        {dependencies.map((dependency) => {
          const state = health.data?.dependencies?.[dependency]
          return (
            <li key={dependency} data-dependency={dependency} aria-label={dependency}>
              <h3>{dependency}</h3>
              <dl>
                <dt>Status</dt>
                <dd class={`status ${state?.status ?? ""}`}>{state?.status ?? "…"}</dd>
                <dt>Breaker</dt>
                <dd class="breaker">{state?.breaker ?? "…"}</dd>
                <dt>Latency</dt>
                <dd>{state?.latency_ms === null || state === undefined ? "—" : `${state.latency_ms.toFixed(1)} ms`}</dd>
              </dl>
              <div class="actions">
                {actions.map(([action, label, consequence]) => (
                  <button
                    key={action}
                    type="button"
                    aria-label={`${label} the ${dependency} breaker`}
                    onClick={() =>
                      confirm({
                        title: `${label} the ${dependency} breaker?`,
                        message: consequence,
                        confirmLabel: `${label} breaker`,
                        withNotes: false,
                        run: () => api.setBreaker(dependency, action).then(health.refresh)
                      })}
                  >
                    {label}
                  </button>
                ))}
              </div>
            </li>
          )
        })}
      </ul>
    </section>
  )
}

/** Requests and errors per minute over the last hour, as two lines on one SVG. */
const RatesChart = ({ points }: { points: ReadonlyArray<RatePoint> }) => {
  const width = 600
  const height = 120
  const max = Math.max(1, ...points.map((p) => Math.max(p.requests, p.errors)))
  const line = (value: (p: RatePoint) => number) =>
    points.map((p, i) => `${((i / Math.max(1, points.length - 1)) * width).toFixed(1)},${(height - (value(p) / max) * height).toFixed(1)}`).join(" ")
  const last = points.at(-1)
  const total = (value: (p: RatePoint) => number) => points.reduce((sum, p) => sum + value(p), 0)
  return (
    <figure class="rates">
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label={`Requests and errors per minute over the last hour; peak ${max} a minute`}>
        <polyline class="requests" points={line((p) => p.requests)} />
        <polyline class="errors" points={line((p) => p.errors)} />
      </svg>
      <figcaption>
        <span class="legend requests">Requests</span> {total((p) => p.requests)} in the hour, {last?.requests ?? 0} this minute ·{" "}
        <span class="legend errors">Errors</span> {total((p) => p.errors)} in the hour, {last?.errors ?? 0} this minute · peak {max}/min
      </figcaption>
    </figure>
  )
}

const Rates = ({ onSignedOut }: Section) => {
  const rates = usePolling(api.rates, [], onSignedOut)
  return (
    <section aria-labelledby="rates-title">
      <h2 id="rates-title">Requests and errors, last hour</h2>
      {rates.error !== undefined && <p role="alert" class="failure">{rates.error}</p>}
      {rates.data !== undefined && <RatesChart points={rates.data} />}
    </section>
  )
}

const payloadText = (record: ErrorRecord): string =>
  record.request_payload === null
    ? "—"
    : record.request_payload_kind === "json"
    ? JSON.stringify(record.request_payload, null, 2)
    : String(record.request_payload)

const ErrorDetail = ({ errorId, session, onSignedOut, navigate }: Section & { errorId: string; session: SessionInfo }) => {
  const [record, setRecord] = useState<ErrorRecord | undefined>()
  const [failure, setFailure] = useState<string | undefined>()
  const [notes, setNotes] = useState("")
  const load = useCallback(() => {
    api.error(errorId).then(setRecord, (error) => (isSignedOut(error) ? onSignedOut() : setFailure(describeFailure(error))))
  }, [errorId])
  useEffect(load, [load])
  const resolve = async (event: Event) => {
    event.preventDefault()
    try {
      setRecord(await api.resolveError(errorId, notes))
      setFailure(undefined)
    } catch (error) {
      setFailure(describeFailure(error))
    }
  }
  const traceLink = record?.trace_id !== null && record?.trace_id !== undefined && session.trace_url !== null
    ? session.trace_url.replaceAll("{trace_id}", encodeURIComponent(record.trace_id))
    : undefined
  return (
    <main class="error-detail" aria-labelledby="error-title">
      <p><a href="/console" onClick={navigate}>← All error groups</a></p>
      <h1 id="error-title">Error {errorId}</h1>
      {failure !== undefined && <p role="alert" class="failure">{failure}</p>}
      {record !== undefined && (
        <>
          <p class="summary">
            <span class={`severity ${record.severity}`}>{record.status}</span> <strong class="code">{record.code}</strong> {record.method ?? ""}{" "}
            {record.route ?? ""} · {record.resolved ? <span class="badge resolved">resolved</span> : <span class="badge open">unresolved</span>}
          </p>
          <dl class="record">
            {(
              [
                ["Occurred", record.occurred_at],
                ["Message", record.message],
                ["Type", record.type],
                ["Severity", record.severity],
                ["Fingerprint", record.fingerprint],
                ["Tenant", record.tenant_id],
                ["Session", record.session_id],
                ["Request id", record.request_id],
                ["Trace id", record.trace_id],
                ["User agent", record.user_agent],
                ["Resolved at", record.resolved_at],
                ["Notes", record.notes]
              ] as const
            ).map(([label, value]) => [<dt key={`${label}-t`}>{label}</dt>, <dd key={`${label}-d`}>{value ?? "—"}</dd>])}
          </dl>
          <p>
            {traceLink !== undefined
              ? <a class="trace-link" href={traceLink} target="_blank" rel="noopener noreferrer">Open the trace</a>
              : <span class="hint">{record.trace_id === null ? "No trace was recorded." : "Set BULWARK_TRACE_URL to link to the trace."}</span>}
          </p>
          <h2>Request payload <span class="hint">({record.request_payload_kind ?? "none"}, sanitised)</span></h2>
          <pre class="payload" tabIndex={0}>{payloadText(record)}</pre>
          <h2>Stack</h2>
          <pre class="stack" tabIndex={0}>{record.stack ?? "No stack: only defects and dependency failures keep one."}</pre>
          {!record.resolved && (
            <form class="resolve" onSubmit={resolve}>
              <h2>Resolve</h2>
              <label>
                Notes
                <textarea name="notes" rows={3} maxLength={4096} value={notes} onInput={(e) => setNotes(e.currentTarget.value)} />
              </label>
              <button type="submit" class="primary">Resolve this error</button>
            </form>
          )}
        </>
      )}
    </main>
  )
}

interface Section {
  readonly onSignedOut: () => void
  readonly navigate: (event: MouseEvent) => void
  readonly confirm: (confirmation: Confirmation) => void
}

const FindError = ({ go }: { go: (path: string) => void }) => {
  const [value, setValue] = useState("")
  return (
    <form
      class="find"
      role="search"
      aria-label="Find an error by its error_id"
      onSubmit={(event) => {
        event.preventDefault()
        const id = value.trim().replace(/^urn:uuid:/, "").toLowerCase()
        if (/^[0-9a-f-]{36}$/.test(id)) go(`/console/errors/${id}`)
      }}
    >
      <label>
        Error id
        <input name="error-id" value={value} placeholder="error_id from a problem body" onInput={(e) => setValue(e.currentTarget.value)} />
      </label>
      <button type="submit">Open</button>
    </form>
  )
}

const App = () => {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined)
  const [path, setPath] = useState(location.pathname)
  const [confirmation, setConfirmation] = useState<Confirmation | undefined>()
  const [failure, setFailure] = useState<string | undefined>()
  useEffect(() => {
    api.session().then(setSession, (error) => (isSignedOut(error) ? setSession(null) : setFailure(describeFailure(error))))
    const onPop = () => setPath(location.pathname)
    addEventListener("popstate", onPop)
    return () => removeEventListener("popstate", onPop)
  }, [])
  const go = (to: string) => {
    history.pushState(null, "", to)
    setPath(to)
    scrollTo(0, 0)
  }
  const navigate = (event: MouseEvent) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return
    event.preventDefault()
    go(new URL((event.currentTarget as HTMLAnchorElement).href).pathname)
  }
  const onSignedOut = () => setSession(null)
  if (failure !== undefined) return <main><p role="alert" class="failure">{failure}</p></main>
  if (session === undefined) return <p class="loading">Loading the console…</p>
  if (session === null) return <SignIn onSignedIn={setSession} />
  const section: Section = { onSignedOut, navigate, confirm: setConfirmation }
  const errorId = ERROR_PATH.exec(path)?.[1]?.toLowerCase()
  return (
    <>
      <header class="top">
        <a class="brand" href="/console" onClick={navigate}>Bulwark console</a>
        <FindError go={go} />
        <button type="button" class="sign-out" onClick={() => api.signOut().then(onSignedOut, onSignedOut)}>Sign out</button>
      </header>
      {errorId !== undefined
        ? <ErrorDetail {...section} errorId={errorId} session={session} />
        : (
          <main class="overview">
            <h1 class="visually-hidden">Overview</h1>
            <div class="panels">
              <Dependencies {...section} />
              <Rates {...section} />
            </div>
            <Groups {...section} />
          </main>
        )}
      {confirmation !== undefined && <ConfirmDialog confirmation={confirmation} onDone={() => setConfirmation(undefined)} />}
    </>
  )
}

render(<App />, document.getElementById("app")!)
