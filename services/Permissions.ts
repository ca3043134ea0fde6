/** What a key may do beyond being authenticated: post as an agent it is allowed (`*` allows all). */
import { Effect } from "effect"
import type { Principal } from "../src/domain/Principal.js"
import { Forbidden } from "../src/errors.js"

export const mayActAs = (principal: Principal, agentId: string): boolean =>
  principal.allowedAgents.includes("*") || principal.allowedAgents.includes(agentId)

export const authorizeAgent = (principal: Principal, agentId: string): Effect.Effect<void, Forbidden> =>
  mayActAs(principal, agentId)
    ? Effect.void
    : Effect.fail(new Forbidden({ detail: `This key may not act as agent ${JSON.stringify(agentId)}.` }))
