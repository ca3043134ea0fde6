/** API key material: `bk_` + 32 random bytes (base64url); only the SHA-256 hex digest is stored. */
import { randomBase64Url, sha256Hex } from "../src/Digests.js"

export const API_KEY_PREFIX = "bk_"

export const generateApiKey = (): string => API_KEY_PREFIX + randomBase64Url(32)

export const hashApiKey = (key: string): string => sha256Hex(key)
