/**
 * `bun run conformance`: the official MCP conformance suite (@modelcontextprotocol/conformance)
 * against a real Bulwark. The suite sends no credentials, so a small proxy in front adds the
 * `Authorization` header of a fresh tenant's key; everything else passes through untouched.
 * Scenarios that need the suite's own fixture tools, prompts or resources are listed, each with its
 * reason, in expected-failures.yml; the suite fails the run if any other scenario fails, or if one
 * listed there starts passing.
 */
import { join } from "node:path"
import { startServer } from "../../support/server.js"

let target = ""
let credential = ""

const proxy = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  idleTimeout: 0,
  fetch: async (request) => {
    const url = new URL(request.url)
    const headers = new Headers(request.headers)
    headers.set("authorization", `Bearer ${credential}`)
    headers.delete("host")
    const body = request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer()
    return fetch(`${target}${url.pathname}${url.search}`, { method: request.method, headers, body, signal: request.signal })
  }
})

// The proxy's origin is the one clients see, so it is the one the server must allow (as behind any proxy).
const server = await startServer({ mcp: { allowedOrigins: [`http://127.0.0.1:${proxy.port}`, `http://localhost:${proxy.port}`] } })
target = server.url
credential = (await server.createTenant()).api_key

const suite = join(import.meta.dir, "../../../node_modules/@modelcontextprotocol/conformance/dist/index.js")
const scenario = process.argv[2]
const run = Bun.spawn(
  [
    process.execPath,
    suite,
    "server",
    "--url",
    `http://127.0.0.1:${proxy.port}/mcp`,
    ...(scenario === undefined ? ["--expected-failures", join(import.meta.dir, "expected-failures.yml")] : ["--scenario", scenario])
  ],
  { stdout: "inherit", stderr: "inherit" }
)
const code = await run.exited
proxy.stop(true)
await server.close()
process.exit(code)
