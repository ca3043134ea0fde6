import { Schema } from "effect"
import { StoredText, Timestamp, Uuid } from "./Ids.js"

export const TenantId = Uuid
export const KeyId = Uuid

/** An agent name a key may post as, or `*` for all. */
export const AgentName = Schema.String.pipe(Schema.pattern(/^(\*|[A-Za-z0-9._:-]{1,128})$/))

export class CreateTenant extends Schema.Class<CreateTenant>("CreateTenant")({
  name: StoredText.pipe(Schema.trimmed(), Schema.minLength(1), Schema.maxLength(128))
}) {}

export class CreatedTenant extends Schema.Class<CreatedTenant>("CreatedTenant")({
  id: TenantId,
  name: Schema.String,
  created_at: Timestamp,
  api_key: Schema.String.annotations({ description: "Shown once; only its hash is stored." }),
  api_key_id: KeyId
}) {}

export class CreateKey extends Schema.Class<CreateKey>("CreateKey")({
  name: Schema.optional(StoredText.pipe(Schema.maxLength(128))),
  allowed_agents: Schema.optional(Schema.Array(AgentName).pipe(Schema.maxItems(256))),
  admin: Schema.optional(Schema.Boolean)
}) {}

export class CreatedKey extends Schema.Class<CreatedKey>("CreatedKey")({
  id: KeyId,
  tenant_id: TenantId,
  name: Schema.NullOr(Schema.String),
  api_key: Schema.String.annotations({ description: "Shown once; only its hash is stored." }),
  allowed_agents: Schema.Array(Schema.String),
  admin: Schema.Boolean,
  created_at: Timestamp
}) {}
