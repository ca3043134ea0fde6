import { describe, expect, test } from "bun:test"
import { Effect, Either, TestClock, TestContext } from "effect"
import { Redacted } from "effect"
import { AccessTokens } from "../../services/AccessTokens.js"
import { authorizeAgent, mayActAs } from "../../services/Permissions.js"
import { JwtSecret } from "../../layers/Secrets.js"
import type { Principal } from "../../src/domain/Principal.js"

const principal = (allowedAgents: ReadonlyArray<string>): Principal => ({
  tenantId: crypto.randomUUID(),
  keyId: crypto.randomUUID(),
  allowedAgents,
  admin: false,
  credential: "api_key",
  tokenVersion: 0
})

describe("agent permissions", () => {
  test("an explicit list allows exactly its agents", async () => {
    const key = principal(["planner", "coder"])
    expect(mayActAs(key, "planner")).toBe(true)
    expect(mayActAs(key, "coder")).toBe(true)
    expect(mayActAs(key, "reviewer")).toBe(false)
    const refused = await Effect.runPromise(Effect.either(authorizeAgent(key, "reviewer")))
    expect(Either.isLeft(refused) && refused.left._tag === "Forbidden").toBe(true)
  })

  test("a wildcard allows every agent; an empty list none", async () => {
    expect(mayActAs(principal(["*"]), "anyone")).toBe(true)
    expect(mayActAs(principal([]), "anyone")).toBe(false)
    expect(await Effect.runPromise(Effect.either(authorizeAgent(principal(["*"]), "x")))).toEqual(Either.right(undefined))
  })
})

describe("access token expiry", () => {
  test("a token is valid for 15 minutes by the Clock, then AUTH_EXPIRED", () =>
    Effect.runPromise(
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.parse("2026-11-23T10:00:00Z"))
        const tokens = yield* AccessTokens
        const issued = yield* tokens.issue(principal(["*"]))
        yield* TestClock.adjust("14 minutes")
        expect((yield* tokens.verify(issued.access_token)).ver).toBe(0)
        yield* TestClock.adjust("2 minutes")
        const expired = yield* Effect.either(tokens.verify(issued.access_token))
        expect(Either.isLeft(expired) && expired.left.code).toBe("AUTH_EXPIRED")
      }).pipe(
        Effect.provide(AccessTokens.Default),
        Effect.provideService(JwtSecret, Redacted.make("x".repeat(40))),
        Effect.provide(TestContext.TestContext)
      )
    ))
})
