/**
 * Structured logs: one JSON object per line (`LOG_FORMAT=json`) or pretty for people; on stdout for
 * the server, on stderr for the CLI, whose stdout carries only its result.
 */
import { Layer, Logger, type LogLevel } from "effect"

export const layer = (options: {
  readonly format: "json" | "pretty"
  readonly level: LogLevel.LogLevel
  readonly stream?: "stdout" | "stderr"
}) =>
  Layer.merge(
    options.stream === "stderr"
      ? Logger.replace(
        Logger.defaultLogger,
        options.format === "json" ? Logger.withConsoleError(Logger.jsonLogger) : Logger.prettyLogger({ stderr: true })
      )
      : options.format === "json" ? Logger.json : Logger.pretty,
    Logger.minimumLogLevel(options.level)
  )
