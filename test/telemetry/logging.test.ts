/** The JSON log line: Effect's own line, field for field, written by a cheaper logger. */
import { describe, expect, test } from "bun:test"
import { Cause, Effect, FiberId, HashMap, List, Logger, LogLevel, LogSpan, Redacted } from "effect"
import * as Logging from "../../src/telemetry/Logging.js"

const options = (overrides: Partial<Logger.Logger.Options<unknown>> = {}): Logger.Logger.Options<unknown> => ({
  fiberId: FiberId.make(42, 0),
  logLevel: LogLevel.Warning,
  message: ["No session 6f1c exists for this tenant."],
  cause: Cause.empty,
  context: Effect.runSync(Effect.withFiberRuntime((fiber) => Effect.succeed(fiber.getFiberRefs()))),
  spans: List.make(LogSpan.make("request", 1_000)),
  annotations: HashMap.make(
    ["error_id", "01a23625-21a4-74d8-acdb-c105fb9162e2"],
    ["status", 404],
    ["trace_id", null],
    ["secret", Redacted.make("hunter2")],
    ["nested", { route: "/v1/sessions/:id", tags: ["a", 1] }]
  ),
  date: new Date(1_764_000_000_000),
  ...overrides
})

const effects = (input: Logger.Logger.Options<unknown>) => JSON.parse(Logger.jsonLogger.log(input))
const ours = (input: Logger.Logger.Options<unknown>) => JSON.parse(Logging.jsonLine(input))

describe("the JSON log line", () => {
  test("has the fields and values of Effect's JSON logger: message, level, time, annotations, spans, fiber", () => {
    const input = options()
    expect(ours(input)).toEqual(effects(input))
    expect(ours(input)).toMatchObject({ logLevel: "WARN", annotations: { status: 404, secret: "<redacted>" }, spans: { request: 1_763_999_999_000 } })
    expect(Object.keys(ours(input))).toEqual(Object.keys(effects(input)))
  })

  test("a cause, an error message and several messages read as Effect writes them", () => {
    const input = options({
      annotations: HashMap.empty(),
      message: [new Error("boom"), "and more"],
      cause: Cause.fail(new Error("underneath"))
    })
    expect(ours(input)).toEqual(effects(input))
    expect(ours(input).cause).toContain("underneath")
  })

  test("a value plain JSON cannot write (a bigint deep in an annotation, a cycle) still gives a line", () => {
    const cyclic: Record<string, unknown> = { name: "loop" }
    cyclic.self = cyclic
    const line = JSON.parse(Logging.jsonLine(options({ annotations: HashMap.make(["nested", { route: "/r", tags: ["a", 1n] }], ["cyclic", cyclic]) })))
    expect(line.annotations.nested).toEqual({ route: "/r", tags: ["a", "1"] })
    expect(line.annotations.cyclic).toEqual({ name: "loop" })
  })
})
