import { Schema } from "effect"

export class TokenRequest extends Schema.Class<TokenRequest>("TokenRequest")({
  api_key: Schema.Redacted(Schema.String).annotations({ description: "An API key (`bk_...`)." })
}) {}

export class AccessToken extends Schema.Class<AccessToken>("AccessToken")({
  access_token: Schema.String,
  token_type: Schema.Literal("Bearer"),
  expires_in: Schema.Int.annotations({ description: "Seconds until it expires." })
}) {}
