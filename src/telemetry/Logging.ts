/**
 * Structured logs: one JSON object per line (`LOG_FORMAT=json`) or pretty for people; on stdout for
 * the server, on stderr for the CLI, whose stdout carries only its result.
 */
import { Cause, Clock, Context, Effect, type Fiber, FiberId, FiberRef, HashMap, HashSet, Inspectable, Layer, Logger, type LogLevel, type LogSpan } from "effect"
import * as DefaultServices from "effect/DefaultServices"
import { currentSpanOf } from "./CurrentSpan.js"

/** A value as Effect's own JSON logger shows it: a primitive as is, anything else through its `toJSON`. */
const structured = (value: unknown): unknown => {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return value
    case "bigint":
    case "function":
    case "symbol":
      return String(value)
    default:
      return value === null ? null : Inspectable.toJSON(value)
  }
}

/** An `Error` shows its name and message (its own fields are not enumerable), as in Effect's logger. */
const messageToJSON = (value: unknown): unknown =>
  value instanceof Error && !("toJSON" in value) ? { ...value, name: value.name, message: value.message } : structured(value)

/** What a line is made of: `Logger.Options` with the annotations as a plain record. */
interface LineParts {
  readonly message: unknown
  readonly logLevel: LogLevel.LogLevel
  readonly date: Date
  readonly cause: Cause.Cause<unknown>
  readonly annotations: Readonly<Record<string, unknown>>
  readonly spans: Iterable<LogSpan.LogSpan>
  readonly fiberId: FiberId.FiberId
}

/** `FiberId.threadName`, without a set of ids built for the one id a running fiber has. */
const threadNameOf = (fiberId: FiberId.FiberId): string => (fiberId._tag === "Runtime" ? `#${fiberId.id}` : FiberId.threadName(fiberId))

const lineOf = ({ annotations, cause, date, fiberId, logLevel, message, spans }: LineParts): string => {
  const now = date.getTime()
  const annotationsObject: Record<string, unknown> = {}
  for (const key in annotations) annotationsObject[key] = structured(annotations[key])
  const spansObject: Record<string, number> = {}
  for (const span of spans) spansObject[span.label] = now - span.startTime
  const messages = Array.isArray(message) ? message : [message]
  const entry = {
    message: messages.length === 1 ? messageToJSON(messages[0]) : messages.map(messageToJSON),
    logLevel: logLevel.label,
    timestamp: date.toISOString(),
    cause: Cause.isEmpty(cause) ? undefined : Cause.pretty(cause, { renderErrorCause: true }),
    annotations: annotationsObject,
    spans: spansObject,
    fiberId: threadNameOf(fiberId)
  }
  try {
    return JSON.stringify(entry)
  } catch {
    return stringifyAnything(entry)
  }
}

const recordOf = (annotations: HashMap.HashMap<string, unknown>): Record<string, unknown> => {
  const record: Record<string, unknown> = {}
  for (const [key, value] of annotations) record[key] = value
  return record
}

/**
 * The line Effect's `Logger.jsonLogger` writes (same fields, same order), for a fraction of its cost:
 * every 4xx writes one at the default level, and Effect's took about 40 µs a line here (a replacer
 * function over every value, the `Console` service looked up per line). A value that plain
 * `JSON.stringify` refuses (a cycle, a bigint) takes the slow path, which drops repeated objects as
 * Effect's does and writes a bigint as its digits, where Effect's logger would throw.
 */
export const jsonLine = (options: Logger.Logger.Options<unknown>): string => lineOf({ ...options, annotations: recordOf(options.annotations) })

const stringifyAnything = (entry: unknown): string => {
  const seen = new WeakSet<object>()
  return JSON.stringify(entry, (_key, value: unknown) => {
    if (typeof value === "bigint") return String(value)
    if (typeof value !== "object" || value === null) return value
    if (seen.has(value)) return undefined
    seen.add(value)
    return value
  })
}

/**
 * Where lines go: one write per event-loop turn with all of that turn's lines, not one per line.
 * A write per line cost about 25 µs of a 404's CPU under load (measured in process, against about
 * 5 µs for building the line), and every 4xx writes one at the default level. The lines of the
 * turn being served are written when it ends, when the logging layer's scope closes (the server's
 * shutdown) and when the process exits; only a kill that gives the process no last turn
 * (`SIGKILL`) loses them, as it loses the ledger rows still queued in the same moment.
 */
const lineSink = (stream: "stdout" | "stderr") =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const write = stream === "stderr" ? (text: string) => console.error(text) : (text: string) => console.log(text)
      let pending: Array<string> = []
      let scheduled = false
      // Once the scope has closed (the server shutting down), a line still logged by a fiber that
      // outlives it is written at once: nothing is left to flush it at exit.
      let closed = false
      const flush = () => {
        scheduled = false
        if (pending.length === 0) return
        const text = pending.join("\n")
        pending = []
        write(text)
      }
      process.on("exit", flush)
      return {
        add: (line: string) => {
          if (closed) return write(line)
          pending.push(line)
          if (!scheduled) {
            scheduled = true
            setImmediate(flush)
          }
        },
        close: () => {
          closed = true
          process.off("exit", flush)
          flush()
        }
      }
    }),
    (sink) => Effect.sync(sink.close)
  )

/** How our JSON logger takes a line whose annotations are a plain record (see `logFields`). */
const WritesParts = Symbol.for("bulwark/Logging/WritesParts")

interface PartsWriter {
  readonly [WritesParts]: (parts: LineParts) => void
}

const writesParts = (logger: object): logger is PartsWriter => WritesParts in logger

const jsonLogger = (add: (line: string) => void): Logger.Logger<unknown, void> & PartsWriter =>
  Object.assign(Logger.make<unknown, void>((options) => add(jsonLine(options))), { [WritesParts]: (parts: LineParts) => add(lineOf(parts)) })

/**
 * One log line with `fields` as annotations beside the fiber's own, handed straight to the fiber's
 * loggers: what `Effect.annotateLogs(Effect.logWithLevel(...))` writes, without a fiber reference set
 * for the line and restored after, and without the annotations' persistent map where no logger needs
 * one. The ledger writes one per 4xx at the default level: building the map, then reading it back
 * twice (for the line and for the span event) cost about a fifth of a 404 here. Our JSON logger takes
 * the plain record; Effect's tracer logger gets the same span event it would add (annotations, fiber,
 * level); any other logger its usual options.
 */
export const logFields = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  level: LogLevel.LogLevel,
  message: string,
  fields: Readonly<Record<string, unknown>>,
  millis: number
): void => {
  const loggers = fiber.getFiberRef(FiberRef.currentLoggers)
  if (HashSet.size(loggers) === 0) return
  const own = fiber.getFiberRef(FiberRef.currentLogAnnotations)
  const annotations = HashMap.size(own) === 0 ? fields : { ...recordOf(own), ...fields }
  const fiberId = fiber.id()
  let options: Logger.Logger.Options<unknown> | undefined
  for (const logger of loggers) {
    if (writesParts(logger)) {
      logger[WritesParts]({ message, logLevel: level, date: new Date(millis), cause: Cause.empty, annotations, spans: fiber.getFiberRef(FiberRef.currentLogSpan), fiberId })
    } else if (logger === Logger.tracerLogger) {
      const span = currentSpanOf(fiber)
      if (span === undefined) continue
      const clock = Context.get(fiber.getFiberRef(DefaultServices.currentServices), Clock.Clock)
      span.event(message, clock.unsafeCurrentTimeNanos(), { ...annotations, "effect.fiberId": threadNameOf(fiberId), "effect.logLevel": level.label })
    } else {
      options ??= {
        fiberId,
        logLevel: level,
        message: [message],
        cause: Cause.empty,
        context: fiber.getFiberRefs(),
        spans: fiber.getFiberRef(FiberRef.currentLogSpan),
        annotations: HashMap.fromIterable(Object.entries(annotations)),
        date: new Date(millis)
      }
      logger.log(options)
    }
  }
}

export const layer = (options: {
  readonly format: "json" | "pretty"
  readonly level: LogLevel.LogLevel
  readonly stream?: "stdout" | "stderr"
}) =>
  Layer.merge(
    options.format === "json"
      ? Layer.unwrapScoped(Effect.map(lineSink(options.stream ?? "stdout"), (sink) => Logger.replace(Logger.defaultLogger, jsonLogger(sink.add))))
      : Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: options.stream === "stderr" })),
    Logger.minimumLogLevel(options.level)
  )
