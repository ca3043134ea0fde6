/** API key material: `bk_` + 32 random bytes (base64url); only the SHA-256 hex digest is stored. */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

export const API_KEY_PREFIX = "bk_"

export const generateApiKey = (): string => API_KEY_PREFIX + randomBytes(32).toString("base64url")

/** Bun's one-shot SHA-256: half the cost of `createHash` on every authenticated request. */
export const hashApiKey = (key: string): string => Bun.SHA256.hash(key, "hex")

/** Compares two secrets in constant time (over their digests, so lengths do not leak either). */
export const secretsEqual = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())
