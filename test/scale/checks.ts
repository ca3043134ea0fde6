/**
 * The cross-instance checks, shared by the scale tests of each database: each drives real
 * processes over HTTP and asserts what a client of any instance would see.
 */
import { expect } from "bun:test"
import { randomUUID } from "node:crypto"
import { expectProblem, withKey } from "../support/server.js"
import type { Cluster, Instance } from "../support/instances.js"

export interface Posted {
  readonly id: string
  readonly seq: number
}

/** Thrown for an answer that is not 201; a refused connection surfaces as fetch's own error. */
export class NotCreated extends Error {
  constructor(readonly status: number, body: string) {
    super(`expected 201, got ${status}: ${body}`)
  }
}

export const postMessage = async (
  via: Instance,
  key: string,
  sessionId: string,
  content: string,
  headers: Record<string, string> = {}
): Promise<Posted> => {
  const response = await via.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, {
    method: "POST",
    headers,
    body: JSON.stringify({ agent_id: "writer", content })
  }))
  if (response.status !== 201) throw new NotCreated(response.status, await response.text())
  return (await response.json()) as Posted
}

/** Every message of the session, read back page by page through `via`. */
export const readAll = async (via: Instance, key: string, sessionId: string): Promise<Array<Posted>> => {
  const all: Array<Posted> = []
  for (let after = 0;;) {
    const response = await via.fetch(`/v1/sessions/${sessionId}/messages?after=${after}&limit=200`, withKey(key))
    expect(response.status).toBe(200)
    const page = (await response.json()) as { data: Array<Posted>; next_after: number | null }
    all.push(...page.data)
    if (page.next_after === null) return all
    after = page.next_after
  }
}

/** The session holds 1..N with no gap or repeat, N ≥ `atLeast`, and every acknowledged message. */
export const expectEveryWriteKept = async (
  via: Instance,
  key: string,
  sessionId: string,
  atLeast: number,
  acknowledged: ReadonlyArray<Posted> = []
) => {
  const stored = await readAll(via, key, sessionId)
  expect(stored.length).toBeGreaterThanOrEqual(atLeast)
  expect(stored.map((message) => message.seq)).toEqual(Array.from({ length: stored.length }, (_, i) => i + 1))
  const seqById = new Map(stored.map((message) => [message.id, message.seq]))
  const missing = acknowledged.filter((message) => seqById.get(message.id) !== message.seq)
  expect(missing).toEqual([])
}

/**
 * `rounds` times, one Idempotency-Key sent with the same body to every instance at once: every
 * answer is 201 with the same message, and the session holds one message per key.
 */
export const racingIdempotentPosts = async (instances: ReadonlyArray<Instance>, key: string, sessionId: string, rounds: number) => {
  for (let round = 0; round < rounds; round++) {
    const idempotencyKey = randomUUID()
    const answers = await Promise.all(instances.map(async (via) => {
      const response = await via.fetch(`/v1/sessions/${sessionId}/messages`, withKey(key, {
        method: "POST",
        headers: { "idempotency-key": idempotencyKey },
        body: JSON.stringify({ agent_id: "writer", content: `round ${round}` })
      }))
      return { status: response.status, body: await response.text() }
    }))
    expect(answers.map((answer) => answer.status)).toEqual(instances.map(() => 201))
    const ids = new Set(answers.map((answer) => (JSON.parse(answer.body) as Posted).id))
    expect(ids.size).toBe(1)
  }
  const stored = await readAll(instances[0]!, key, sessionId)
  expect(stored.map((message) => message.seq)).toEqual(Array.from({ length: rounds }, (_, i) => i + 1))
}

export interface RevocationOptions {
  /** Runs just before the revocation is sent (e.g. pausing Redis). */
  readonly duringRevocation?: () => Promise<void>
  /** How long, after the revocation, every instance must keep refusing (default 1500 ms). */
  readonly holdFor?: number
}

const status = async (via: Instance, credential: string) => {
  const response = await via.fetch("/v1/sessions?limit=1", withKey(credential))
  if (response.status === 401) {
    const problem = await expectProblem(response, 401, "AUTH_REVOKED")
    return problem.status
  }
  await response.body?.cancel()
  return response.status
}

/**
 * A key warmed on every instance, then deleted through the first one; each instance is asked every
 * 10 ms until it refuses the key, and must keep refusing until `holdFor` has passed.
 * The same for an access token whose key revokes its tokens. Returns each instance's delay from
 * the revocation's acknowledgement to its first refusal (ms), keys then tokens, and prints them.
 */
export const measureRevocation = async (
  cluster: Cluster,
  instances: ReadonlyArray<Instance>,
  label: string,
  options: RevocationOptions = {}
): Promise<Array<number>> => {
  const first = instances[0]!
  const tenant = await cluster.createTenant(first)
  const tokenResponse = await instances[1 % instances.length]!.fetch("/v1/auth/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ api_key: tenant.api_key })
  })
  expect(tokenResponse.status).toBe(200)
  const token = ((await tokenResponse.json()) as { access_token: string }).access_token
  const refusedWithin = async (credential: string, revoke: () => Promise<Response>) => {
    // Warmed just before: each instance has the key in memory under the current change mark.
    for (let warm = 0; warm < 3; warm++) {
      for (const via of instances) expect(await status(via, credential)).toBe(200)
    }
    await options.duringRevocation?.()
    const revoked = await revoke()
    expect([200, 204]).toContain(revoked.status)
    const acknowledgedAt = performance.now()
    const holdUntil = acknowledgedAt + (options.holdFor ?? 1500)
    return Promise.all(instances.map(async (via) => {
      let refusedAt: number | undefined
      while (performance.now() < holdUntil || refusedAt === undefined) {
        const answer = await status(via, credential)
        if (answer === 401) refusedAt ??= performance.now()
        else if (refusedAt !== undefined) throw new Error(`${via.name} accepted a revoked credential again (${answer}) after refusing it`)
        else if (answer !== 200) throw new Error(`${via.name} answered ${answer} to a credential being revoked`)
        if (refusedAt === undefined && performance.now() - acknowledgedAt > 5000) throw new Error(`${via.name} still accepts it after 5 s`)
        // Every 10 ms: the polls count against the key's rate limit until it is refused.
        await Bun.sleep(10)
      }
      return Math.round(refusedAt - acknowledgedAt)
    }))
  }

  // The token first (its key must still be live to revoke it), then the key itself.
  const tokenDelays = await refusedWithin(token, () => first.fetch("/v1/auth/revoke", withKey(tenant.api_key, { method: "POST" })))
  const keyDelays = await refusedWithin(tenant.api_key, () => cluster.admin(first, `/v1/admin/keys/${tenant.api_key_id}`, { method: "DELETE" }))
  console.log(`revocation delay (${label}), ms per instance: key deleted ${keyDelays.join(", ")}; tokens revoked ${tokenDelays.join(", ")}`)
  return [...keyDelays, ...tokenDelays]
}

/**
 * Six writers post through every instance while one of them is killed with SIGKILL: every write
 * acknowledged before or after is in the database with `seq` gapless, and a new instance joining
 * the survivors continues the sequence. Answers the instances left running.
 */
export const killOneUnderWriteLoad = async (options: {
  readonly instances: ReadonlyArray<Instance>
  readonly cluster: Cluster
  readonly key: string
  readonly sessionId: string
}): Promise<Array<Instance>> => {
  const { cluster, key, sessionId } = options
  let instances = [...options.instances]
  const acknowledged: Array<Posted> = []
  const refused: Array<string> = []
  let writing = true
  const writer = async (id: number) => {
    for (let n = 0; writing; n++) {
      const via = instances[(id + n) % instances.length]!
      try {
        acknowledged.push(await postMessage(via, key, sessionId, `w${id}-${n}`))
      } catch (error) {
        // The killed instance drops the connection (not acknowledged); any answer other than 201 is a failure.
        if (error instanceof NotCreated) refused.push(`${via.name}: ${error.message}`)
      }
    }
  }
  const writers = Array.from({ length: 6 }, (_, id) => writer(id))
  await Bun.sleep(400)
  const victim = instances[1]!
  await victim.kill()
  instances = instances.filter((instance) => instance !== victim)
  const atKill = acknowledged.length
  await Bun.sleep(400)
  writing = false
  await Promise.all(writers)
  expect(refused).toEqual([])
  expect(atKill).toBeGreaterThan(0)
  expect(acknowledged.length).toBeGreaterThan(atKill)
  await expectEveryWriteKept(instances[0]!, key, sessionId, acknowledged.length, acknowledged)
  const joined = await cluster.start("d")
  instances.push(joined)
  const next = await postMessage(joined, key, sessionId, "after the kill")
  await expectEveryWriteKept(instances[0]!, key, sessionId, next.seq)
  return instances
}
