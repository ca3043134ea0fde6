import { startServer } from "./test/support/server.ts"
const server = await startServer()
const key = (await server.createTenant()).api_key
const session = (await (await server.fetch("/v1/sessions", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" })).json()) as { id: string }
const init = await server.fetch("/mcp", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", accept: "application/json, text/event-stream" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "b", version: "1" } } }) })
const sid = init.headers.get("mcp-session-id")!
await init.text()
const mode = process.argv[2]
const legacyBody = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "get_session", arguments: { session_id: session.id } } })
const modernBody = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "get_session", arguments: { session_id: session.id }, _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } })
const f = mode === "legacy"
  ? () => server.fetch("/mcp", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", accept: "application/json, text/event-stream", "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25" }, body: legacyBody })
  : mode === "modern"
  ? () => server.fetch("/mcp", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", accept: "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "get_session" }, body: modernBody })
  : () => server.fetch(`/v1/sessions/${session.id}`, { headers: { authorization: `Bearer ${key}` } })
await Promise.all(Array.from({ length: 16 }, async () => { for (let i = 0; i < 600; i++) { const r = await f(); await r.text() } }))
await server.close()
