import { Context, Schema } from "effect"
import { Timestamp } from "./Ids.js"

export class ConsoleSignIn extends Schema.Class<ConsoleSignIn>("ConsoleSignIn")({
  admin_token: Schema.Redacted(Schema.String).annotations({ description: "The admin token (BULWARK_ADMIN_TOKEN)." })
}) {}

/** Who the console is signed in as, and what it needs to know of the server. */
export class ConsoleSessionInfo extends Schema.Class<ConsoleSessionInfo>("ConsoleSessionInfo")({
  signed_in_with: Schema.Literal("console_session", "admin_token", "admin_key"),
  expires_at: Schema.NullOr(Timestamp).annotations({ description: "When the console session ends; null for a bearer credential." }),
  trace_url: Schema.NullOr(Schema.String).annotations({
    description: "BULWARK_TRACE_URL: the link from an error to its trace, `{trace_id}` to be replaced; null when not set."
  })
}) {}

/** The request headers sign-in reads: the page's `Origin` must be the server's own. */
export const SignInHeaders = Schema.Struct({
  origin: Schema.optional(Schema.String),
  host: Schema.optional(Schema.String),
  "x-forwarded-proto": Schema.optional(Schema.String)
})

/** What the console is told of the server's configuration. */
export class ConsoleSettings extends Context.Tag("bulwark/ConsoleSettings")<ConsoleSettings, {
  /** BULWARK_TRACE_URL, `{trace_id}` to be replaced. */
  readonly traceUrl: string | null
}>() {}
