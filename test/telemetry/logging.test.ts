/** The JSON log line: Effect's own line, field for field, written by a cheaper logger. */
import { describe, expect, test } from "bun:test"
import { Cause, Deferred, Effect, Fiber, FiberId, HashMap, List, Logger, LogLevel, LogSpan, Redacted, type Tracer } from "effect"
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

describe("the writes", () => {
  const withConsoleLog = async (body: (calls: Array<string>) => Promise<void>) => {
    const calls: Array<string> = []
    const original = console.log
    console.log = (text: string) => void calls.push(text)
    try {
      await body(calls)
    } finally {
      console.log = original
    }
  }
  const logging = Logging.layer({ format: "json", level: LogLevel.Info })

  test("a turn's lines go out in one write when the turn ends, in order", () =>
    withConsoleLog(async (calls) => {
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        yield* Effect.logInfo("one")
        yield* Effect.logWarning("two")
        yield* Effect.logError("three")
        // Still this turn: nothing written yet.
        expect(calls).toEqual([])
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        expect(calls).toHaveLength(1)
        expect(calls[0]!.split("\n").map((line) => JSON.parse(line).message)).toEqual(["one", "two", "three"])
        yield* Effect.logInfo("four")
      }).pipe(Effect.provide(logging))))
      // The scope closed before the next turn: its last line was written on the way out.
      expect(calls).toHaveLength(2)
      expect(JSON.parse(calls[1]!).message).toBe("four")
    }))

  test("a line logged through a closed sink (a fiber that outlived the server's scope) is written at once", () =>
    withConsoleLog(async (calls) => {
      await Effect.runPromise(Effect.gen(function*() {
        const go = yield* Deferred.make<void>()
        // Forked while the logging layer is up (it inherits its loggers), logging after its scope closed.
        const late = yield* Effect.forkDaemon(Effect.zipRight(Deferred.await(go), Effect.logWarning("after the end"))).pipe(Effect.provide(logging))
        yield* Deferred.succeed(go, undefined)
        yield* Fiber.join(late)
      }))
      expect(calls.map((text) => JSON.parse(text).message)).toEqual(["after the end"])
    }))

  test("a process that exits in the middle of a turn still writes that turn's lines", async () => {
    const script = [
      `import { Effect, LogLevel } from "effect"`,
      `import * as Logging from ${JSON.stringify(new URL("../../src/telemetry/Logging.ts", import.meta.url).pathname)}`,
      `Effect.runFork(Effect.zipRight(Effect.logWarning("last words"), Effect.sync(() => process.exit(3))).pipe(Effect.provide(Logging.layer({ format: "json", level: LogLevel.Info }))))`
    ].join("\n")
    const child = Bun.spawn([process.execPath, "-e", script], { cwd: new URL("../..", import.meta.url).pathname, stdout: "pipe", stderr: "inherit" })
    expect(await child.exited).toBe(3)
    expect(JSON.parse((await new Response(child.stdout).text()).trim()).message).toBe("last words")
  })
})

describe("a line with fields (the ledger's, one per 4xx)", () => {
  const fields = { error_id: "01a23625-21a4-74d8-acdb-c105fb9162e2", code: "SESSION_NOT_FOUND", status: 404, trace_id: null }
  const millis = 1_764_000_000_000

  /** Logs once through `logFields` and once as Effect would, each in a span of its own, and answers both lines, both spans and what another logger saw. */
  const both = async () => {
    const written: Array<string> = []
    const seen: Array<Logger.Logger.Options<unknown>> = []
    const original = console.log
    console.log = (text: string) => void written.push(...text.split("\n"))
    try {
      const spans = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const inSpan = (name: string, log: Effect.Effect<void>) =>
          Effect.withSpan(Effect.zipRight(log, Effect.flatMap(Effect.currentSpan, (span) => Effect.succeed(span as Tracer.Span))), name)
        const ours = yield* inSpan("ours", Effect.withFiberRuntime((fiber) => Effect.sync(() => Logging.logFields(fiber, LogLevel.Warning, "No session.", fields, millis))))
        const effects = yield* inSpan("effect's", Effect.annotateLogs(Effect.logWarning("No session."), fields))
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        return { ours, effects }
      }).pipe(
        Effect.annotateLogs("tenant", "t1"),
        Effect.withLogSpan("request"),
        Effect.provide(Logger.add(Logger.make((options) => void seen.push(options)))),
        Effect.provide(Logging.layer({ format: "json", level: LogLevel.Info }))
      )))
      return { lines: written.map((line) => JSON.parse(line)), spans, seen }
    } finally {
      console.log = original
    }
  }

  test("writes the line Effect's annotated log writes: the fields beside the fiber's own annotations, its spans, its fiber", async () => {
    const { lines: [ours, effects] } = await both()
    expect(ours.timestamp).toBe(new Date(millis).toISOString())
    expect({ ...ours, timestamp: undefined, spans: undefined, fiberId: undefined }).toEqual({ ...effects, timestamp: undefined, spans: undefined, fiberId: undefined })
    expect(ours.annotations).toEqual({ tenant: "t1", ...fields })
    expect(Object.keys(ours.spans)).toEqual(["request"])
    expect(ours.fiberId).toBe(effects.fiberId)
  })

  test("adds the span event Effect's tracer logger adds, and gives any other logger its usual options", async () => {
    const { seen, spans } = await both()
    const event = (span: Tracer.Span) => {
      const events = (span as unknown as { events: Array<[string, bigint, Record<string, unknown>]> }).events
      expect(events).toHaveLength(1)
      const [name, , attributes] = events[0]!
      return { name, attributes }
    }
    expect(event(spans.ours)).toEqual(event(spans.effects))
    expect(event(spans.ours).attributes).toMatchObject({ ...fields, tenant: "t1", "effect.logLevel": "WARN" })
    expect(seen).toHaveLength(2)
    for (const options of seen) {
      expect(Object.fromEntries(options.annotations)).toEqual({ tenant: "t1", ...fields })
      expect(options.logLevel).toBe(LogLevel.Warning)
      expect(options.message).toEqual(["No session."])
    }
  })
})
