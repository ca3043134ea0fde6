/** Entry point: read the configuration, then serve until SIGTERM/SIGINT. */
import * as BunRuntime from "@effect/platform-bun/BunRuntime"
import { Effect, Layer, Option } from "effect"
import { appConfig, consoleTracingConfig, describeStartupFailure } from "./Config.js"
import { MainLive } from "./Server.js"

const program = Effect.flatMap(Effect.all([appConfig, consoleTracingConfig]), ([config, extra]) =>
  Layer.launch(MainLive({ config, traceUrl: Option.getOrNull(extra.traceUrl), traceSampleRatio: extra.traceSampleRatio }))).pipe(
  Effect.tapErrorCause((cause) => Effect.sync(() => console.error(describeStartupFailure(cause))))
)

BunRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
