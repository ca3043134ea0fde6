/**
 * Sanitising (SPEC §6): values under secret-looking keys become "[Filtered]" in payloads and
 * headers alike, and credentials are cut out of free text (error messages, stacks). Applied before
 * anything reaches the ledger, a log line or a span.
 */

export const FILTERED = "[Filtered]"

const SECRET_KEYS = new Set([
  "password",
  "passwd",
  "secret",
  "token",
  "apikey",
  "authorization",
  "cookie",
  "setcookie",
  "bearer",
  "jwt",
  "credentials",
  "privatekey"
])

/** `API-Key`, `api_key` and `apiKey` are one key: case and `-`/`_` are folded. */
const fold = (key: string): string => key.toLowerCase().replaceAll("-", "").replaceAll("_", "")

/** Exact names, and names that end in one (`access_token`, `client_secret`, `x-api-key`). */
export const isSecretKey = (key: string): boolean => {
  const folded = fold(key)
  if (SECRET_KEYS.has(folded)) return true
  for (const secret of SECRET_KEYS) if (folded.endsWith(secret)) return true
  return false
}

export const sanitizeValue = (value: unknown, depth = 0): unknown => {
  if (depth > 32) return FILTERED
  if (typeof value === "string") return sanitizeText(value)
  if (Array.isArray(value)) return value.map((item) => sanitizeValue(item, depth + 1))
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const [key, inner] of Object.entries(value)) {
      out[key] = isSecretKey(key) ? FILTERED : sanitizeValue(inner, depth + 1)
    }
    return out
  }
  return value
}

export const sanitizeHeaders = (headers: Readonly<Record<string, string>>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) out[name] = isSecretKey(name) ? FILTERED : sanitizeText(value)
  return out
}

const CREDENTIAL_PATTERNS: ReadonlyArray<RegExp> = [
  /bk_[A-Za-z0-9_-]{16,}/g, // our API keys
  /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, // JWTs
  /(Bearer|Basic)\s+[^\s"',;]+/gi
]

/**
 * The key is bounded: an unbounded `+` would retry every suffix of a long word (64 KiB of message
 * content took seconds). A longer key is still caught by its last 64 characters, which is where
 * `isSecretKey` looks (`..._token`).
 */
const KEY_VALUE = /([A-Za-z0-9_-]{1,64})(["']?\s*[:=]\s*["']?)([^\s"'&,;}]+)/g

const sanitizeUncached = (text: string): string => {
  let out = text
  for (const pattern of CREDENTIAL_PATTERNS) {
    out = out.replace(pattern, (match) => (/^(bearer|basic)\s/i.test(match) ? `${match.split(/\s+/)[0]} ${FILTERED}` : FILTERED))
  }
  return out.replace(KEY_VALUE, (match, key: string, separator: string) => (isSecretKey(key) ? `${key}${separator}${FILTERED}` : match))
}

/**
 * Whether a text may hold something to cut: a key, a JWT, a scheme word, or a `key: value` /
 * `key=value` pair. Most texts (an error's message, a user agent) hold none of them, and this
 * look costs a fraction of the patterns.
 */
const MAY_HOLD_CREDENTIAL = /bk_|eyJ|bearer|basic|[:=]/i

/** Cuts credentials out of free text: known token shapes, and `key=value`/`"key": "value"` pairs. */
export const sanitizeText = (text: string): string => (MAY_HOLD_CREDENTIAL.test(text) ? sanitizeUncached(text) : text)

export const MAX_PAYLOAD_BYTES = 8 * 1024

/**
 * What the ledger kept of a request body (SPEC §6), and how to read it back: `json` is the
 * sanitised JSON text of the whole body; `truncated` the first 8 KiB of a JSON body that was longer
 * after sanitising; `text` a body that was not JSON, sanitised as text (cut to 8 KiB); `binary` a
 * body that was not UTF-8 (its bytes decoded with replacement characters, sanitised as text).
 */
export const PayloadKinds = ["json", "truncated", "text", "binary"] as const
export type PayloadKind = (typeof PayloadKinds)[number]

export interface SanitizedPayload {
  readonly kind: PayloadKind
  readonly text: string
}

const TRUNCATION_MARK = "…[truncated]"

const cutToLimit = (text: string): string =>
  Buffer.byteLength(text) <= MAX_PAYLOAD_BYTES
    ? text
    : Buffer.from(text).subarray(0, MAX_PAYLOAD_BYTES - 16).toString("utf8").replace(/\uFFFD+$/, "") + TRUNCATION_MARK

/** A request body for the ledger: parsed, sanitised, cut to 8 KiB, and labelled with what happened. */
export const sanitizePayload = (body: string): SanitizedPayload | null => {
  if (body.length === 0) return null
  let json: string | undefined
  try {
    json = JSON.stringify(sanitizeValue(JSON.parse(body)))
  } catch {
    // Bun decodes bytes that are not UTF-8 as U+FFFD: such a body was binary, not text.
    return { kind: body.includes("\uFFFD") ? "binary" : "text", text: cutToLimit(sanitizeText(body)) }
  }
  return Buffer.byteLength(json) <= MAX_PAYLOAD_BYTES ? { kind: "json", text: json } : { kind: "truncated", text: cutToLimit(json) }
}

/** How much of a foreign text a log line shows. */
export const SAMPLE_LENGTH = 200

/**
 * A short sample of a text we could not use (a cache entry that did not decode, a message on the
 * event channel), for a log line: sanitised before it is cut, so that a credential straddling the
 * cut is still recognised whole. JSON is sanitised by key, anything else as free text; only a
 * window past the sample's end is looked at, so a huge text costs no more than a small one.
 */
export const sanitizeSample = (text: string, length = SAMPLE_LENGTH): string => {
  const window = text.length > length * 4 ? text.slice(0, length * 4) : text
  let sanitized: string
  try {
    sanitized = window === text ? JSON.stringify(sanitizeValue(JSON.parse(text))) : sanitizeText(window)
  } catch {
    sanitized = sanitizeText(window)
  }
  return sanitized.length > length ? sanitized.slice(0, length) : sanitized
}
