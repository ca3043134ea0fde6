/** The official MCP SDK client against a test server, as an agent host would connect. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { TestServer } from "../support/server.js"

export const connect = async (server: TestServer, credential: string, headers: Record<string, string> = {}) => {
  const client = new Client({ name: "bulwark-test-agent", version: "1.0.0" })
  const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${credential}`, ...headers } }
  })
  await client.connect(transport)
  return { client, transport }
}

/** A raw 2026-07-28 `subscriptions/listen` request (the SDK client speaks the 2025-11-25 era). */
export const listenRequest = (credential: string, id: number, notifications: Record<string, unknown>): RequestInit => ({
  method: "POST",
  headers: {
    authorization: `Bearer ${credential}`,
    accept: "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "subscriptions/listen"
  },
  body: JSON.stringify({
    jsonrpc: "2.0",
    id,
    method: "subscriptions/listen",
    params: {
      _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} },
      notifications
    }
  })
})

/** The structured result of a tool call, typed loosely for assertions. */
export type ToolResult = {
  readonly isError?: boolean
  readonly structuredContent?: Record<string, any>
  readonly content: ReadonlyArray<{ readonly type: string; readonly text?: string }>
}
