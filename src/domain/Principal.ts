import { Context, type Redacted } from "effect"

/** Who is calling: an API key of a tenant. Every tenant-scoped query takes `tenantId` from here. */
export interface Principal {
  readonly tenantId: string
  readonly keyId: string
  readonly allowedAgents: ReadonlyArray<string>
  readonly admin: boolean
  /** How the caller proved itself: the API key itself, or an access token issued for it. */
  readonly credential: "api_key" | "access_token"
  readonly tokenVersion: number
}

export class CurrentPrincipal extends Context.Tag("bulwark/CurrentPrincipal")<CurrentPrincipal, Principal>() {}

/**
 * An operator on `/v1/admin/*`: the admin token, an API key created with `admin`, or a console
 * session opened with the admin token (its cookie).
 */
export type Operator =
  | { readonly _tag: "AdminToken" }
  | { readonly _tag: "AdminKey"; readonly principal: Principal }
  | { readonly _tag: "ConsoleSession"; readonly id: Redacted.Redacted<string>; readonly expiresAt: string }

export class CurrentOperator extends Context.Tag("bulwark/CurrentOperator")<CurrentOperator, Operator>() {}
