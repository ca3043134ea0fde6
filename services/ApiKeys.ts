/** API key material: `bk_` + 32 random bytes (base64url); only the SHA-256 hex digest is stored. */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

export const API_KEY_PREFIX = "bk_"

export const generateApiKey = (): string => API_KEY_PREFIX + randomBytes(32).toString("base64url")

export const hashApiKey = (key: string): string => createHash("sha256").update(key).digest("hex")

/** Compares two secrets in constant time (over their digests, so lengths do not leak either). */
export const secretsEqual = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())
