/** Entry point: read the configuration, then serve until SIGTERM/SIGINT. */
// First, so that the start-up JIT policy covers every other module's evaluation.
import { startupOver } from "./StartupJit.js"
import * as BunRuntime from "@effect/platform-bun/BunRuntime"
import { Effect, Layer, Option } from "effect"
import { appConfig, consoleTracingConfig, describeStartupFailure, streamCapsConfig } from "./Config.js"
import { MainLive } from "./Server.js"

const program = Effect.flatMap(Effect.all([appConfig, consoleTracingConfig, streamCapsConfig]), ([config, extra, streamCaps]) =>
  Layer.launch(
    MainLive({ config, traceUrl: Option.getOrNull(extra.traceUrl), traceSampleRatio: extra.traceSampleRatio, streamCaps }).pipe(
      Layer.tap(() => Effect.sync(startupOver))
    )
  )).pipe(
  Effect.tapErrorCause((cause) => Effect.sync(() => console.error(describeStartupFailure(cause))))
)

BunRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
