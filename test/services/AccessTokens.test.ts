/**
 * Access tokens: every token jose refuses is 401 (`AUTH_INVALID`, or `AUTH_EXPIRED`), and a failure
 * that is not about the token (here a key the runtime cannot import) is a defect, not a 401.
 */
import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit, Layer, Redacted, TestClock, TestContext } from "effect"
import { SignJWT } from "jose"
import { AccessTokens } from "../../services/AccessTokens.js"
import { JwtSecret } from "../../layers/Secrets.js"
import type { Principal } from "../../src/domain/Principal.js"

const SECRET = "s".repeat(48)
const key = new TextEncoder().encode(SECRET)
const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url")

const principal = { tenantId: "t1", keyId: "k1", tokenVersion: 1, allowedAgents: ["*"] } as unknown as Principal

const withSecret = (secret: string) =>
  Layer.provide(AccessTokens.Default, Layer.succeed(JwtSecret, Redacted.make(secret)))

const verifyExit = (secret: string, token: string) =>
  Effect.runPromise(
    Effect.exit(Effect.flatMap(AccessTokens, (tokens) => tokens.verify(token))).pipe(Effect.provide(withSecret(secret)))
  )

const codeOf = (exit: Exit.Exit<unknown, { readonly code: string }>) =>
  Exit.isFailure(exit) && Cause.isFailType(exit.cause) ? exit.cause.error.code : Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"

describe("AccessTokens.verify", () => {
  test("every malformed, forged or unsupported token is 401 AUTH_INVALID", async () => {
    const good = await new SignJWT({ tid: "t1", ver: 1, agents: ["*"] })
      .setProtectedHeader({ alg: "HS256" }).setSubject("k1").setIssuer("bulwark").setIssuedAt().setExpirationTime("10m").sign(key)
    const [header, payload, signature] = good.split(".") as [string, string, string]
    const signedPayload = async (text: string) => {
      const signingInput = `${header}.${b64(text)}`
      const hmac = new Bun.CryptoHasher("sha256", key).update(signingInput).digest("base64url")
      return `${signingInput}.${hmac}`
    }
    const tokens: Record<string, string> = {
      empty: "",
      word: "abc",
      dots: "..",
      fourParts: "a.b.c.d",
      encrypted: "a.b.c.d.e",
      algNone: `${b64({ alg: "none" })}.${payload}.`,
      otherAlgorithm: `${b64({ alg: "RS256" })}.${payload}.${signature}`,
      unknownCritical: `${b64({ alg: "HS256", crit: ["x"], x: 1 })}.${payload}.${signature}`,
      headerNotJson: `${b64("nope")}.${payload}.${signature}`,
      forgedSignature: `${header}.${payload}.AAAA`,
      otherKey: await new SignJWT({ tid: "t1" }).setProtectedHeader({ alg: "HS256" }).setIssuer("bulwark").sign(new TextEncoder().encode("o".repeat(48))),
      otherIssuer: await new SignJWT({ tid: "t1" }).setProtectedHeader({ alg: "HS256" }).setIssuer("someone").setExpirationTime("10m").sign(key),
      signedNotJson: await signedPayload("not json"),
      signedArray: await signedPayload("[1,2]"),
      signedWrongClaims: await new SignJWT({ tid: 5 }).setProtectedHeader({ alg: "HS256" }).setIssuer("bulwark").setExpirationTime("10m").sign(key),
      unicode: "é.ü.ß",
      long: "a".repeat(100_000)
    }
    for (const [name, token] of Object.entries(tokens)) {
      expect([name, codeOf(await verifyExit(SECRET, token))]).toEqual([name, "AUTH_INVALID"])
    }
    expect(codeOf(await verifyExit(SECRET, good))).toBe("success")
  })

  test("an expired token is 401 AUTH_EXPIRED", () =>
    Effect.runPromise(Effect.gen(function*() {
      const tokens = yield* AccessTokens
      yield* TestClock.setTime(Date.now())
      const issued = yield* tokens.issue(principal)
      yield* TestClock.adjust("16 minutes")
      const exit = yield* Effect.exit(tokens.verify(issued.access_token))
      expect(codeOf(exit)).toBe("AUTH_EXPIRED")
    }).pipe(Effect.provide(withSecret(SECRET)), Effect.provide(TestContext.TestContext))))

  test("a failure that is not about the token (a key the runtime cannot import) is a defect, not a 401", async () => {
    const good = await new SignJWT({ tid: "t1" }).setProtectedHeader({ alg: "HS256" }).setIssuer("bulwark").sign(key)
    const exit = await verifyExit("", good)
    expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)._tag === "None").toBe(true)
  })
})
