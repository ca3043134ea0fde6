/** How the MCP door runs its Effect programs: on the server's own runtime, with the same services as REST. */
import type { Effect, Fiber } from "effect"
import type { ErrorLedger } from "../../services/ErrorLedger.js"
import type { Events } from "../../services/Events.js"
import type { Memory } from "../../services/Memory.js"
import type { Messages } from "../../services/Messages.js"
import type { Sessions } from "../../services/Sessions.js"

export type McpServices = Sessions | Messages | Memory | Events | ErrorLedger

export interface McpRunner {
  readonly promise: <A>(effect: Effect.Effect<A, never, McpServices>) => Promise<A>
  readonly fork: <A, E>(effect: Effect.Effect<A, E, McpServices>) => Fiber.RuntimeFiber<A, E>
}
