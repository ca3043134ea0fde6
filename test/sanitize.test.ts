import { describe, expect, test } from "bun:test"
import { isSecretKey, sanitizeHeaders, sanitizePayload, sanitizeText, sanitizeValue } from "../src/telemetry/Sanitize.js"

describe("sanitising", () => {
  test("secret keys are matched case-insensitively with - and _ folded", () => {
    for (const key of ["password", "PASSWD", "client_secret", "Token", "api_key", "API-KEY", "apiKey", "Authorization", "cookie", "Set-Cookie", "bearer", "jwt", "credentials", "private_key", "x-api-key", "access_token"]) {
      expect(isSecretKey(key)).toBe(true)
    }
    for (const key of ["title", "content", "agent_id", "tokens_used", "keyboard"]) expect(isSecretKey(key)).toBe(false)
  })

  test("nested payload values and headers become [Filtered]", () => {
    expect(sanitizeValue({ a: [{ password: "p" }], b: { "Private-Key": "k" }, c: 1 })).toEqual({
      a: [{ password: "[Filtered]" }],
      b: { "Private-Key": "[Filtered]" },
      c: 1
    })
    expect(sanitizeHeaders({ authorization: "Bearer x", cookie: "s=1", "user-agent": "curl" })).toEqual({
      authorization: "[Filtered]",
      cookie: "[Filtered]",
      "user-agent": "curl"
    })
  })

  test("credentials are cut out of free text", () => {
    const key = "bk_" + "A".repeat(43)
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    const text = sanitizeText(`failed for ${key} with Bearer abc.def token=xyz {"password": "pw"} and ${jwt}`)
    for (const secret of [key, "abc.def", "xyz", "pw", jwt]) expect(text).not.toContain(secret)
    expect(text).toContain("Bearer [Filtered]")
  })

  test("payloads are cut to 8 KiB and say what was kept", () => {
    const long = sanitizePayload(JSON.stringify({ content: "x".repeat(20_000) }))!
    expect(long.kind).toBe("truncated")
    expect(Buffer.byteLength(long.text)).toBeLessThanOrEqual(8 * 1024)
    expect(long.text.endsWith("…[truncated]")).toBe(true)
    expect(sanitizePayload(JSON.stringify({ password: "pw", a: 1 }))).toEqual({ kind: "json", text: '{"password":"[Filtered]","a":1}' })
    expect(sanitizePayload('{"title":')).toEqual({ kind: "text", text: '{"title":' })
    expect(sanitizePayload("token=abc \uFFFD\uFFFD")).toEqual({ kind: "binary", text: "token=[Filtered] \uFFFD\uFFFD" })
    expect(sanitizePayload("")).toBeNull()
  })
})
