/** The database breaker through HTTP: a database that keeps failing is cut off, then let back in. */
import { Database } from "bun:sqlite"
import { expect, test } from "bun:test"
import { defaultResilience } from "../../layers/database/Database.js"
import { eventually, expectProblem, startServer, withKey } from "../support/server.js"
import { faultMatrix } from "../support/faultMatrix.js"

test("repeated database failures open the breaker: 503 at once with Retry-After, ready is 503; recovery closes it", async () => {
  const server = await startServer({
    databaseResilience: { ...defaultResilience, breaker: { ...defaultResilience.breaker, openDuration: "300 millis" } }
  })
  const other = new Database(server.databaseFile)
  try {
    const tenant = await server.createTenant()
    const created = (await (await server.fetch("/v1/sessions", withKey(tenant.api_key, { method: "POST", body: "{}" }))).json()) as { id: string }
    const opened = () => server.admin("/metrics").then((response) => response.text()).then((text) =>
      Number(/^bulwark_breaker_transitions_total\{dependency="database",from="closed",to="open"\} (\d+)$/m.exec(text)?.[1] ?? 0))
    const openedBefore = await opened()
    // The whole schema goes away under the running server: every call fails, the ledger's too
    // (its rows go to stderr, silenced here; the ledger tests assert that path).
    const tables = ["api_keys", "sessions", "errors"]
    const fault = faultMatrix(server, "sqlite-schema-gone", { broken: "the SQLite schema", how: "another connection renames `api_keys`, `sessions` and `errors` away; `GET /v1/sessions/{id}` until the breaker opens", dependency: "database" })
    other.run("PRAGMA foreign_keys = OFF")
    for (const table of tables) other.run(`ALTER TABLE ${table} RENAME TO ${table}_away`)
    const originalWrite = process.stderr.write.bind(process.stderr)
    process.stderr.write = (() => true) as typeof process.stderr.write

    // Each failure is honest (503, never 401 or 404), and enough in a row open the breaker (the
    // ledger's own failing writes count too, whenever its writer gets to them).
    await eventually(async () => {
      await expectProblem(await server.fetch(`/v1/sessions/${created.id}`, withKey(tenant.api_key)), 503, "DATABASE_UNAVAILABLE")
      return (await opened()) > openedBefore ? true : undefined
    })
    const started = performance.now()
    const rejected = await server.fetch(`/v1/sessions/${created.id}`, withKey(tenant.api_key))
    const elapsed = performance.now() - started
    const problem = await expectProblem(rejected, 503, "DATABASE_UNAVAILABLE")
    await fault.saw(problem)
    expect(problem.retry_after_seconds).toBe(1)
    // Refusing without a call is proven under TestClock (CircuitBreaker.test.ts); here only a wait on a retry budget or the deadline would fail.
    expect(elapsed).toBeLessThan(1000)
    await expectProblem(await server.fetch("/health/ready"), 503, "DATABASE_UNAVAILABLE")
    process.stderr.write = originalWrite
    for (const table of tables) other.run(`ALTER TABLE ${table}_away RENAME TO ${table}`)
    fault.healed()
    const metrics = await (await server.admin("/metrics")).text()
    expect(metrics).toMatch(/^bulwark_breaker_state\{dependency="database"\} [12]$/m)
    expect(await opened()).toBe(openedBefore + 1)

    // After the open time a probe goes through, succeeds, and closes the breaker.
    const recovered = await eventually(async () => {
      const response = await server.fetch(`/v1/sessions/${created.id}`, withKey(tenant.api_key))
      await response.body?.cancel()
      return response.status === 200 ? response : undefined
    })
    expect(recovered.status).toBe(200)
    await fault.recovered()
    expect((await server.fetch("/health/ready")).status).toBe(200)
    expect(await (await server.admin("/metrics")).text()).toMatch(/^bulwark_breaker_state\{dependency="database"\} 0$/m)
  } finally {
    other.close()
    await server.close()
  }
}, 20_000)
