/**
 * Hashes and random material, from Bun's own crypto: its one-shot SHA-256 costs half of
 * `node:crypto`'s `createHash`, and every authenticated request and every ledger row hashes.
 */

/** The SHA-256 of `text`, as lowercase hex. */
export const sha256Hex = (text: string): string => Bun.SHA256.hash(text, "hex")

/** `bytes` random bytes from the system's CSPRNG, as base64url. */
export const randomBase64Url = (bytes: number): string => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("base64url")

/** Compares two secrets in constant time (over their digests, so lengths do not leak either). */
export const secretsEqual = (a: string, b: string): boolean =>
  crypto.timingSafeEqual(Bun.SHA256.hash(a) as Uint8Array, Bun.SHA256.hash(b) as Uint8Array)
