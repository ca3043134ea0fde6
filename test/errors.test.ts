/** The catalogue itself: statuses, problem types and the problem body shape (SPEC §2–§3). */
import { describe, expect, test } from "bun:test"
import {
  AppErrorClasses,
  codeOfSlug,
  codesByTag,
  DbOperational,
  type ErrorCode,
  Internal,
  NotFound,
  problemTypes,
  slugOf,
  statusByTag,
  statusOfCode
} from "../src/errors.js"
import { problemBody } from "../src/http/Problem.js"

describe("error catalogue", () => {
  test("every tag has exactly the status SPEC §3 gives it", () => {
    expect(statusByTag).toEqual({
      ValidationFailed: 400,
      Unauthenticated: 401,
      Forbidden: 403,
      NotFound: 404,
      MethodNotAllowed: 405,
      Conflict: 409,
      PayloadTooLarge: 413,
      UnsupportedMediaType: 415,
      RateLimited: 429,
      Internal: 500,
      DbOperational: 503,
      CacheUnavailable: 503,
      MemoryUnavailable: 503,
      Overloaded: 503,
      Timeout: 504
    })
    expect(AppErrorClasses.map((errorClass): string => errorClass._tag).sort()).toEqual(Object.keys(statusByTag).sort())
  })

  test("every code belongs to one tag, has a problem type, and its slug maps back", () => {
    const allCodes: Array<string> = Object.values(codesByTag).flat()
    expect(new Set(allCodes).size).toBe(allCodes.length)
    expect([...allCodes].sort()).toEqual(Object.keys(problemTypes).sort())
    for (const code of allCodes as Array<ErrorCode>) {
      expect(codeOfSlug(slugOf(code))).toBe(code)
      expect(statusOfCode(code)).toBeGreaterThanOrEqual(400)
    }
    expect(codeOfSlug("not-a-problem")).toBeUndefined()
  })

  test("a 500 body carries only the fixed sentence, never the defect", () => {
    const body = problemBody(new Internal({ reason: "bug", cause: new Error("SELECT * FROM secrets") }), crypto.randomUUID())
    expect(body.detail).toBe("An internal error occurred.")
    expect(JSON.stringify(body)).not.toContain("SELECT")
  })

  test("a 503 carries retry_after_seconds; a 404 does not", () => {
    const unavailable = problemBody(
      new DbOperational({ operation: "x", reason: "locked", transient: true, retryAfterSeconds: 3, cause: null }),
      crypto.randomUUID()
    )
    expect(unavailable.retry_after_seconds).toBe(3)
    const missing = problemBody(new NotFound({ code: "SESSION_NOT_FOUND", detail: "no" }), crypto.randomUUID())
    expect("retry_after_seconds" in missing).toBe(false)
  })
})
