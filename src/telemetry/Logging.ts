/**
 * Structured logs: one JSON object per line (`LOG_FORMAT=json`) or pretty for people; on stdout for
 * the server, on stderr for the CLI, whose stdout carries only its result.
 */
import { Cause, Effect, FiberId, Inspectable, Layer, Logger, type LogLevel } from "effect"

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

/**
 * The line Effect's `Logger.jsonLogger` writes (same fields, same order), for a fraction of its cost:
 * every 4xx writes one at the default level, and Effect's took about 40 µs a line here (a replacer
 * function over every value, the `Console` service looked up per line). A value that plain
 * `JSON.stringify` refuses (a cycle, a bigint) takes the slow path, which drops repeated objects as
 * Effect's does and writes a bigint as its digits, where Effect's logger would throw.
 */
export const jsonLine = (
  { annotations, cause, date, fiberId, logLevel, message, spans }: Logger.Logger.Options<unknown>
): string => {
  const now = date.getTime()
  const annotationsObject: Record<string, unknown> = {}
  for (const [key, value] of annotations) annotationsObject[key] = structured(value)
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
    fiberId: FiberId.threadName(fiberId)
  }
  try {
    return JSON.stringify(entry)
  } catch {
    return stringifyAnything(entry)
  }
}

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

const jsonLogger = (add: (line: string) => void) => Logger.make<unknown, void>((options) => add(jsonLine(options)))

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
