/** Structured logs on stdout: one JSON object per line (`LOG_FORMAT=json`) or pretty for people. */
import { Layer, Logger, type LogLevel } from "effect"

export const layer = (options: { readonly format: "json" | "pretty"; readonly level: LogLevel.LogLevel }) =>
  Layer.merge(
    options.format === "json" ? Logger.json : Logger.pretty,
    Logger.minimumLogLevel(options.level)
  )
