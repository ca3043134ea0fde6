/** `BULWARK_MCP_ALLOWED_ORIGINS`: the origins a browser may reach `/mcp` from besides the server's own. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expectProblem, startServer, type TestServer } from "../support/server.js"

const initialize = (server: TestServer, key: string, origin: string) =>
  server.fetch("/mcp", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, accept: "application/json, text/event-stream", "content-type": "application/json", origin },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "o", version: "1" } } })
  })

describe("a configured origin", () => {
  let server: TestServer
  let key: string
  beforeAll(async () => {
    process.env["BULWARK_MCP_ALLOWED_ORIGINS"] = "https://bulwark.example.com, https://agents.example.com:8443"
    try {
      server = await startServer()
    } finally {
      delete process.env["BULWARK_MCP_ALLOWED_ORIGINS"]
    }
    key = (await server.createTenant()).api_key
  })
  afterAll(() => server.close())

  test("is served; an origin that is not listed is 403 FORBIDDEN", async () => {
    for (const origin of ["https://bulwark.example.com", "https://agents.example.com:8443"]) {
      const response = await initialize(server, key, origin)
      expect(response.status).toBe(200)
      await response.text()
    }
    await expectProblem(await initialize(server, key, "https://bulwark.example.com.evil.test"), 403, "FORBIDDEN")
    await expectProblem(await initialize(server, key, "http://bulwark.example.com"), 403, "FORBIDDEN")
  })
})

test("a value that is not an origin stops the start: exit 1, one line naming the variable", async () => {
  const cwd = mkdtempSync(join(tmpdir(), "bulwark-origins-"))
  try {
    const child = Bun.spawn(["bun", join(import.meta.dir, "..", "..", "src", "main.ts")], {
      cwd,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", BULWARK_MCP_ALLOWED_ORIGINS: "https://ok.example.com,https://bad.example.com/path" },
      stdout: "pipe",
      stderr: "pipe"
    })
    expect(await child.exited).toBe(1)
    const stderr = (await new Response(child.stderr).text()).trim()
    expect(stderr.split("\n")).toHaveLength(1)
    expect(stderr).toContain("BULWARK_MCP_ALLOWED_ORIGINS")
  } finally {
    rmSync(cwd, { recursive: true, force: true })
  }
}, 30_000)
