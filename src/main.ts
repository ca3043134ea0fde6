/** Entry point: read the configuration, then serve until SIGTERM/SIGINT. */
import * as BunRuntime from "@effect/platform-bun/BunRuntime"
import { Effect, Layer } from "effect"
import { appConfig, describeStartupFailure } from "./Config.js"
import { MainLive } from "./Server.js"

const program = Effect.flatMap(appConfig, (config) => Layer.launch(MainLive({ config }))).pipe(
  Effect.tapErrorCause((cause) => Effect.sync(() => console.error(describeStartupFailure(cause))))
)

BunRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
