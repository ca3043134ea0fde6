/**
 * Property-based fuzzing of the whole HTTP surface through a real server: arbitrary methods, paths,
 * headers and bodies against every route, `/mcp` and `/console` included. Whatever is sent, the
 * answer is never a 500, every error is a problem (on `/mcp` a JSON-RPC error or a problem) with a
 * `code` and an `error_id` and nothing server-side in it, no request pollutes `Object.prototype`,
 * and the server still answers afterwards.
 *
 * Seeded and replayable: the seed is printed; `BULWARK_FUZZ_SEED=<seed>` runs the same requests
 * again, `BULWARK_FUZZ_RUNS=<n>` changes how many (200 by default, a few seconds).
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import fc from "fast-check"
import { connect as connectSocket } from "node:net"
import { checkResponse as checkContract } from "../support/contract.js"
import { expectProblem, startServer, type TestServer } from "../support/server.js"

const SEED = process.env.BULWARK_FUZZ_SEED === undefined ? Date.now() ^ (Math.random() * 0x7fffffff) : Number(process.env.BULWARK_FUZZ_SEED)
const RUNS = Number(process.env.BULWARK_FUZZ_RUNS ?? "200")

let server: TestServer
let apiKey: string
let sessionId: string
let prototypeBefore: Array<string | symbol>

beforeAll(async () => {
  console.log(`HTTP fuzz seed: ${SEED} (replay with BULWARK_FUZZ_SEED=${SEED})`)
  prototypeBefore = Reflect.ownKeys(Object.prototype)
  server = await startServer({ requestTimeoutMillis: 5_000 })
  apiKey = (await server.createTenant()).api_key
  const created = await server.fetch("/v1/sessions", {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ title: "fuzz" })
  })
  expect(created.status).toBe(201)
  sessionId = ((await created.json()) as { id: string }).id
})

afterAll(async () => {
  await server?.close()
})

// ---- paths --------------------------------------------------------------------------------------

/** A path segment a client might put where an id or a key goes. */
const segment = fc.oneof(
  fc.constant("SESSION"),
  fc.uuid(),
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
  fc.constantFrom("..", "%2e%2e", "%2E%2E%2F", "..%2f..%2fetc%2fpasswd", "%00", "%ff%fe", "%", "%zz", "a%2Fb", "~", "__proto__", "constructor", "prototype"),
  fc.integer({ min: 1, max: 5 }).map((n) => "a".repeat(n * 2_000)),
  fc.string({ unit: "grapheme", maxLength: 8 }).map(encodeURIComponent)
)

const TEMPLATES: ReadonlyArray<string> = [
  "/",
  "/health",
  "/health/live",
  "/health/ready",
  "/problems/{}",
  "/v1/auth/token",
  "/v1/auth/revoke",
  "/v1/metrics",
  "/metrics",
  "/v1/sessions",
  "/v1/sessions/{}",
  "/v1/sessions/{}/messages",
  "/v1/sessions/{}/events",
  "/v1/sessions/{}/memory",
  "/v1/sessions/{}/memory/{}",
  "/v1/admin/tenants",
  "/v1/admin/tenants/{}/keys",
  "/v1/admin/keys/{}",
  "/v1/admin/breakers",
  "/v1/admin/breakers/{}",
  "/v1/admin/rates",
  "/v1/admin/errors",
  "/v1/admin/errors/stats",
  "/v1/admin/errors/groups",
  "/v1/admin/errors/groups/{}/resolve",
  "/v1/admin/errors/{}",
  "/v1/admin/errors/{}/resolve",
  "/v1/console/session",
  "/mcp",
  "/console",
  "/console/{}",
  "/docs",
  "/openapi.json",
  "/{}"
]

const query = fc.oneof(
  fc.constant(""),
  fc.constantFrom("?limit=-1", "?limit=1e309", "?limit=99999999999999999999", "?after=%00", "?cursor=__proto__", "?a=1&a=2", "?limit=", "?" + "x".repeat(4_000)),
  fc.dictionary(fc.constantFrom("limit", "after", "before", "cursor", "status", "code", "since", "__proto__"), fc.string({ maxLength: 12 }), { maxKeys: 3 })
    .map((entries) => (Object.keys(entries).length === 0 ? "" : `?${new URLSearchParams(entries).toString()}`))
)

const path = fc.tuple(fc.constantFrom(...TEMPLATES), fc.array(segment, { minLength: 2, maxLength: 2 }), query).map(([template, [first, second], search]) => {
  let index = 0
  return template.replaceAll("{}", () => (index++ === 0 ? first! : second!)) + search
})

// ---- headers ------------------------------------------------------------------------------------

const MEDIA_TYPES: ReadonlyArray<string> = [
  "application/json",
  "application/json; charset=utf-8",
  "application/json; charset=latin1",
  "application/json; charset=utf-16",
  "APPLICATION/JSON",
  "application/problem+json",
  "application/vnd.bulwark+json; charset=utf-8",
  "application/x-www-form-urlencoded",
  "application/octet-stream",
  "application/xml",
  "application/cbor",
  "multipart/form-data",
  "multipart/form-data; boundary=fuzz",
  "multipart/mixed; boundary=fuzz",
  "multipart/byteranges",
  "text/plain",
  "text/plain; charset=utf-8",
  "text/html",
  "text/event-stream",
  "text/csv; charset=iso-8859-1",
  "image/png",
  "audio/ogg",
  "video/mp4",
  "font/woff2",
  "model/gltf+json",
  "message/rfc822",
  "example/x",
  "",
  ";",
  "application/json; boundary=\u0001"
]

/** Absent in most requests, so that the rest of the request is what gets exercised. */
const rarely = <A>(arbitrary: fc.Arbitrary<A>): fc.Arbitrary<A | undefined> =>
  fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary })

type Credential = "none" | "admin" | "key" | "garbage" | "basic"

const headers = fc.record({
  credential: fc.constantFrom<Credential>("none", "admin", "key", "garbage", "basic"),
  contentType: fc.oneof(
    { weight: 4, arbitrary: fc.constant("application/json") },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: fc.constantFrom(...MEDIA_TYPES) }
  ),
  duplicateContentType: rarely(fc.constantFrom(...MEDIA_TYPES)),
  duplicateAuthorization: fc.boolean(),
  accept: fc.option(fc.constantFrom("application/json, text/event-stream", "text/event-stream", "*/*", "text/html", "application/xml", ""), { nil: undefined }),
  origin: rarely(fc.constantFrom("http://127.0.0.1", "https://evil.example", "null")),
  huge: rarely(fc.constantFrom(1_000, 8_000, 30_000)),
  mcpSession: rarely(fc.oneof(fc.uuid(), fc.string({ maxLength: 10 }).map((text) => text.replace(/[^\x21-\x7e]/g, "x")))),
  requestId: rarely(fc.string({ maxLength: 200 }).map((text) => text.replace(/[\r\n\0]/g, "")))
})

// ---- bodies -------------------------------------------------------------------------------------

const nested = (depth: number, open: string, close: string, inner: string) => open.repeat(depth) + inner + close.repeat(depth)

const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant<string | Uint8Array | undefined>(undefined) },
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
  {
    weight: 3,
    arbitrary: fc.record({
      role: fc.constantFrom("user", "assistant", "system", "", 1),
      content: fc.oneof(fc.string({ maxLength: 30 }), fc.constant("x".repeat(70_000))),
      name: fc.string({ maxLength: 30 }),
      title: fc.string({ maxLength: 30 }),
      value: fc.jsonValue({ maxDepth: 3 }),
      ttl_seconds: fc.oneof(fc.integer(), fc.double(), fc.constant(1e308)),
      api_key: fc.string({ maxLength: 40 }),
      state: fc.constantFrom("open", "closed", "forced_open", "auto"),
      jsonrpc: fc.constant("2.0"),
      id: fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null)),
      method: fc.constantFrom("initialize", "tools/list", "tools/call", "ping", "resources/list", "notifications/initialized", "__proto__"),
      params: fc.jsonValue({ maxDepth: 3 })
    }, { requiredKeys: [] }).map((value) => JSON.stringify(value))
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}',
      '{"role":"user","content":"x","__proto__":{"isAdmin":true}}',
      '{"value":{"__proto__":{"polluted":"yes"}},"ttl_seconds":60}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"__proto__","arguments":{"constructor":{"prototype":{"polluted":"yes"}}}}}',
      nested(5_000, "[", "]", "1"),
      nested(5_000, '{"a":', "}", "1"),
      nested(100_000, "[", "]", ""),
      "1e999999",
      "-1e999999",
      "123456789012345678901234567890123456789012345678901234567890",
      '{"content":123456789012345678901234567890,"ttl_seconds":1e400}',
      '{"a":1,"a":2}',
      "\uFEFF{}",
      '"\\ud800"',
      "",
      "null",
      "--fuzz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--fuzz--\r\n",
      "a=1&b=2",
      "x".repeat(1024 * 1024 + 10)
    )
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constant(new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])),
      fc.constant(new Uint8Array([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc])),
      fc.uint8Array({ maxLength: 64 })
    )
  }
)

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "QUERY", "get"] as const

const request = fc.record({ method: fc.constantFrom(...METHODS), path, headers, body })

type FuzzRequest = typeof request extends fc.Arbitrary<infer A> ? A : never

/** SPEC §2: a lowercase UUID v7 (time-ordered); Bulwark mints only v7. */
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** What an MCP client may get for a request it got wrong: a JSON-RPC error, not a 500. */
const expectJsonRpcError = (text: string, context: string) => {
  const message = JSON.parse(text) as { jsonrpc?: string; error?: { code?: unknown; message?: unknown } }
  if (message.jsonrpc !== "2.0" || typeof message.error?.code !== "number" || typeof message.error.message !== "string") {
    throw new Error(`not a JSON-RPC error: ${context}`)
  }
  for (const leak of [/\bat .*\(.*:\d+:\d+\)/, /\.ts\b/, /node_modules/, /SQLITE_|sqlite/i, /\/var\/|\/tmp\//]) {
    if (leak.test(text)) throw new Error(`JSON-RPC error leaks server detail (${leak}): ${context}`)
  }
}

const describe = (input: FuzzRequest) =>
  `${input.method} ${input.path.slice(0, 200)} ${JSON.stringify({ ...input.headers, huge: input.headers.huge })} body=${
    input.body === undefined ? "none" : typeof input.body === "string" ? JSON.stringify(input.body.slice(0, 120)) : `bytes(${input.body.length})`
  }`

const send = async (input: FuzzRequest) => {
  const sent = new Headers()
  const authorization = {
    none: undefined,
    admin: `Bearer ${server.adminToken}`,
    key: `Bearer ${apiKey}`,
    garbage: "Bearer bwk_live_not-a-real-key",
    basic: "Basic YWRtaW46YWRtaW4="
  }[input.headers.credential]
  if (authorization !== undefined) sent.append("authorization", authorization)
  if (input.headers.duplicateAuthorization) sent.append("authorization", "Bearer another")
  if (input.headers.contentType !== undefined) sent.append("content-type", input.headers.contentType)
  if (input.headers.duplicateContentType !== undefined) sent.append("content-type", input.headers.duplicateContentType)
  if (input.headers.accept !== undefined) sent.append("accept", input.headers.accept)
  if (input.headers.origin !== undefined) sent.append("origin", input.headers.origin)
  if (input.headers.huge !== undefined) sent.append("x-fuzz-padding", "p".repeat(input.headers.huge))
  if (input.headers.mcpSession !== undefined) sent.append("mcp-session-id", input.headers.mcpSession)
  if (input.headers.requestId !== undefined) sent.append("x-request-id", input.headers.requestId)
  const method = input.method
  // Bun's fetch sends a body only with the standard methods spelled in upper case.
  const withBody = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"].includes(method) && input.body !== undefined
  const target = input.path.replaceAll("SESSION", sessionId)
  const response = await fetch(server.url + target, { method, headers: sent, ...(withBody ? { body: input.body } : {}), signal: AbortSignal.timeout(15_000) })
  // Bun's own parser refuses a malformed request (a control character in a header: 400; headers over
  // its limit: 431) before any route, without our headers: that answer is the runtime's, and only
  // such requests may get it. Every other response is checked against /openapi.json as the harness
  // does (undocumented paths must still carry a request id and answer documented problems).
  if (isRuntimeRefusal(response)) {
    if (!malformedForRuntime(input)) throw new Error(`runtime refusal ${response.status} of a well-formed request: ${describe(input)}`)
    return response
  }
  return checkContract(server.url, method, target, response)
}

const isRuntimeRefusal = (response: Response) => (response.status === 400 || response.status === 431) && !response.headers.has("x-request-id")

const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/

const malformedForRuntime = (input: FuzzRequest) =>
  input.headers.huge !== undefined || input.path.length > 4_000 ||
  [input.headers.contentType, input.headers.duplicateContentType, input.headers.requestId, input.headers.mcpSession].some((value) => value !== undefined && CONTROL.test(value))

const checkResponse = async (input: FuzzRequest, response: Response) => {
  const mediaType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase()
  // An event stream (a session's events, an MCP listen stream) stays open: its headers are the answer.
  if (mediaType === "text/event-stream") {
    await response.body?.cancel()
    expect(response.status).toBe(200)
    return
  }
  const text = await response.text()
  const context = `${describe(input)} → ${response.status} ${mediaType} ${text.slice(0, 300)}`
  if (response.status === 500) throw new Error(`500: ${context}`)
  if (response.status >= 500 && response.status !== 503 && response.status !== 504) throw new Error(`unexpected ${response.status}: ${context}`)
  // On /mcp a JSON-RPC error (or a tool's error result) comes with 200 too: it must not leak either.
  if (input.path.startsWith("/mcp") && response.status === 200 && mediaType === "application/json" && text.includes('"error"')) {
    if (text.startsWith("{") && "error" in JSON.parse(text)) expectJsonRpcError(text, context)
  }
  if (response.status < 400 || input.method === "HEAD") return
  if (isRuntimeRefusal(response)) return
  const isMcp = input.path.startsWith("/mcp")
  if (isMcp && mediaType === "application/json") return expectJsonRpcError(text, context)
  if (mediaType !== "application/problem+json") throw new Error(`error is not a problem: ${context}`)
  const problem = JSON.parse(text) as { code?: unknown; error_id?: unknown }
  if (typeof problem.code !== "string" || typeof problem.error_id !== "string" || !UUID_V7.test(problem.error_id)) {
    throw new Error(`problem without code or error_id: ${context}`)
  }
  // Every promise SPEC §2 makes of a problem, including that nothing server-side leaks into it.
  await expectProblem(new Response(text, { status: response.status, headers: response.headers }), response.status, problem.code)
}

test("arbitrary requests to every route never answer 500, always answer problems, and pollute nothing", async () => {
  const statuses = new Map<number, number>()
  await fc.assert(
    fc.asyncProperty(request, async (input) => {
      const response = await send(input)
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
      await checkResponse(input, response)
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true }
  )
  console.log(`statuses seen: ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`)
  // No body, key or query of any request reached the shared prototype.
  expect(Reflect.ownKeys(Object.prototype)).toEqual(prototypeBefore)
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  expect(({} as Record<string, unknown>).isAdmin).toBeUndefined()
  // The server is still up and well.
  const live = await server.fetch("/health/live")
  expect(live.status).toBe(200)
}, 120_000)

/** JSON-RPC messages, well and badly formed, as an MCP client (or a confused one) posts them. */
const toolArguments = fc.record({
  session_id: fc.oneof(fc.constant("SESSION"), fc.uuid(), fc.string({ maxLength: 10 })),
  id: fc.oneof(fc.uuid(), fc.string({ maxLength: 10 })),
  key: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom("__proto__", "constructor", "../x", "a".repeat(600))),
  value: fc.jsonValue({ maxDepth: 3 }),
  ttl_seconds: fc.oneof(fc.integer(), fc.constant(1e308), fc.double()),
  agent_id: fc.string({ maxLength: 20 }),
  content: fc.string({ maxLength: 40 }),
  title: fc.string({ maxLength: 20 }),
  limit: fc.oneof(fc.integer(), fc.constant(-1)),
  ["__proto__"]: fc.constant({ polluted: "yes" })
}, { requiredKeys: [] })

const mcpMessage = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      jsonrpc: fc.constant("2.0"),
      id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 })),
      method: fc.constant("tools/call"),
      params: fc.record({
        name: fc.constantFrom("create_session", "get_session", "list_sessions", "delete_session", "post_message", "list_messages", "get_memory", "set_memory", "list_memory", "delete_memory", "__proto__", "nope"),
        arguments: toolArguments
      })
    }).map((message) => JSON.stringify(message))
  },
  {
    weight: 2,
    arbitrary: fc.record({
      jsonrpc: fc.constantFrom("2.0", "2.0", "2.0", "1.0", 2),
      id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.jsonValue({ maxDepth: 1 })),
      method: fc.oneof(
        fc.constantFrom("initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read", "prompts/list", "notifications/initialized", "logging/setLevel"),
        fc.string({ maxLength: 20 })
      ),
      params: fc.oneof(
        fc.jsonValue({ maxDepth: 3 }),
        fc.record({ protocolVersion: fc.constantFrom("2025-06-18", "2025-03-26", "1999-01-01", ""), capabilities: fc.jsonValue({ maxDepth: 2 }), clientInfo: fc.jsonValue({ maxDepth: 2 }) })
      )
    }, { requiredKeys: ["jsonrpc", "method"] }).map((message) => JSON.stringify(message))
  },
  { weight: 1, arbitrary: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }).map((batch) => JSON.stringify(batch)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      nested(5_000, "[", "]", ""),
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"set_memory","arguments":{"__proto__":{"polluted":"yes"}}}}',
      "1e999999",
      ""
    )
  }
)

/** An initialized MCP session of the fuzzing key, so that tool calls get past the handshake. */
const openMcpSession = async (): Promise<string> => {
  const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json", accept: "application/json, text/event-stream" }
  const initialize = await server.fetch("/mcp", {
    method: "POST",
    headers,
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "fuzz", version: "1" } } })
  })
  expect(initialize.status).toBe(200)
  await initialize.body?.cancel()
  const session = initialize.headers.get("mcp-session-id")
  if (session === null) throw new Error("initialize answered no Mcp-Session-Id")
  const initialized = await server.fetch("/mcp", {
    method: "POST",
    headers: { ...headers, "mcp-session-id": session },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })
  })
  await initialized.body?.cancel()
  return session
}

test("arbitrary JSON-RPC posted to /mcp answers results, JSON-RPC errors or problems, never a 500", async () => {
  const outcomes = new Map<string, number>()
  const session = await openMcpSession()
  await fc.assert(
    fc.asyncProperty(mcpMessage, fc.boolean(), fc.oneof(fc.constant("SESSION"), fc.constant("SESSION"), fc.uuid(), fc.constant(undefined)), async (message, withKey, given) => {
      const mcpSession = given === "SESSION" ? session : given
      const input: FuzzRequest = {
        method: "POST",
        path: "/mcp",
        headers: {
          credential: withKey ? "key" : "garbage",
          contentType: "application/json",
          duplicateContentType: undefined,
          duplicateAuthorization: false,
          accept: "application/json, text/event-stream",
          origin: undefined,
          huge: undefined,
          mcpSession,
          requestId: undefined
        },
        // Tool calls name the fuzzing session (a real one) where they say SESSION.
        body: message.replaceAll("SESSION", sessionId)
      }
      const response = await send(input)
      const key = `${response.status} ${response.headers.get("content-type")?.split(";")[0] ?? ""}`
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
      await checkResponse(input, response)
    }),
    { seed: SEED, numRuns: Math.max(20, Math.round(RUNS / 2)), endOnFailure: true }
  )
  console.log(`/mcp outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`)
  expect(Reflect.ownKeys(Object.prototype)).toEqual(prototypeBefore)
  expect((await server.fetch("/health/live")).status).toBe(200)
}, 120_000)

test("POST with multipart/form-data and no body is 415 on every POST route, not a 500", async () => {
  const posts = ["/v1/auth/token", "/v1/auth/revoke", "/v1/sessions", `/v1/sessions/${sessionId}/messages`, "/v1/admin/tenants", "/v1/admin/breakers/database", "/v1/console/session"]
  for (const route of posts) {
    for (const contentType of ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]) {
      const response = await server.fetch(route, { method: "POST", headers: { authorization: `Bearer ${server.adminToken}`, "content-type": contentType } })
      await expectProblem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    }
  }
})

/** One raw HTTP/1.1 request, for what `fetch` would normalise away (dot segments, raw bytes in the path). */
const rawRequest = (target: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    const { hostname, port } = new URL(server.url)
    const socket = connectSocket({ host: hostname, port: Number(port) }, () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`)
    })
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", reject)
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1")
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? "0"), text })
    })
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer to ${target}`)))
  })

test("path traversal sent raw reaches no file and never answers 500", async () => {
  const targets = [
    "/../../../../etc/passwd",
    "/console/../../../../etc/passwd",
    "/console/..%2f..%2f..%2fetc%2fpasswd",
    "/console/%2e%2e/%2e%2e/package.json",
    "/docs/../src/Server.ts",
    "/v1/sessions/../admin/tenants",
    "/v1/sessions/%2e%2e/%2e%2e/v1/admin/errors",
    "/console/\u00ff\u00fe",
    "/mcp/../mcp"
  ]
  for (const target of targets) {
    const { status, text } = await rawRequest(target)
    expect(status, target).toBeGreaterThanOrEqual(200)
    expect(status, target).not.toBe(500)
    expect(text, target).not.toContain("root:")
    expect(text, target).not.toContain("\"dependencies\"")
    expect(text, target).not.toContain("MainLive")
  }
})
