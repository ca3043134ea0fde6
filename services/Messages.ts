/**
 * Messages of a session (SPEC §4): posted by an agent the key allows, numbered by `seq` (1, 2, 3,
 * ... per session, no gaps, no repeats), read back in order and paged by `after`. A stored message
 * is announced to the session's event streams; see `Events` for why a failed announcement never
 * loses one.
 */
import { Effect, Option, Schema } from "effect"
import { MAX_CONTENT_BYTES, Message, MessagePage, PostMessage } from "../src/domain/Message.js"
import type { Principal } from "../src/domain/Principal.js"
import { FieldIssue, PayloadTooLarge } from "../src/errors.js"
import { newId, nowIso } from "./Clock.js"
import { Events } from "./Events.js"
import { Idempotency } from "./Idempotency.js"
import { MessagesRepo, toMessage } from "./MessagesRepo.js"
import { authorizeAgent } from "./Permissions.js"
import { DEFAULT_PAGE_SIZE } from "./Sessions.js"
import { sessionNotFound } from "./SessionsRepo.js"

const contentTooLarge = new PayloadTooLarge({
  detail: `Message content may be at most ${MAX_CONTENT_BYTES} bytes.`,
  errors: [new FieldIssue({ pointer: "/content", detail: `must be at most ${MAX_CONTENT_BYTES} bytes of UTF-8` })]
})

const encodePost = Schema.encodeSync(PostMessage)

export class Messages extends Effect.Service<Messages>()("bulwark/Messages", {
  effect: Effect.gen(function*() {
    const repo = yield* MessagesRepo
    const idempotency = yield* Idempotency
    const events = yield* Events

    /**
     * Alone (with an Idempotency-Key) the append runs inside the key's transaction; otherwise it is
     * group-committed with the other posts of this event-loop turn. No span of its own (about 10 µs
     * a post): its work in the process is a few checks, and the write's spans are the database's,
     * in the batch's span, which links the request's.
     */
    const store = (grouped: boolean) => Effect.fnUntraced(function*(caller: Principal, sessionId: string, input: PostMessage) {
      if (Buffer.byteLength(input.content, "utf8") > MAX_CONTENT_BYTES) return yield* contentTooLarge
      yield* authorizeAgent(caller, input.agent_id)
      const stored = yield* (grouped ? repo.appendGrouped : repo.append)(caller.tenantId, {
        id: yield* newId,
        session_id: sessionId,
        agent_id: input.agent_id,
        content: input.content,
        metadata: input.metadata ?? {},
        created_at: yield* nowIso
      })
      if (Option.isNone(stored)) return yield* sessionNotFound(sessionId)
      return toMessage(stored.value)
    })
    const post = store(true)
    const postAlone = store(false)

    const list = Effect.fn("Messages.list")(function*(
      tenantId: string,
      sessionId: string,
      options: { readonly after?: number | undefined; readonly limit?: number | undefined }
    ) {
      if (Option.isNone(yield* repo.lastSeq(tenantId, sessionId))) return yield* sessionNotFound(sessionId)
      const limit = options.limit ?? DEFAULT_PAGE_SIZE
      // One row more than asked tells whether another page exists.
      const rows = yield* repo.listAfter(tenantId, sessionId, options.after ?? 0, limit + 1)
      const page = rows.slice(0, limit)
      const last = page[page.length - 1]
      return new MessagePage({
        data: page.map(toMessage),
        next_after: rows.length > limit && last !== undefined ? last.seq : null
      }, { disableValidation: true })
    })

    /**
     * `post` under the caller's Idempotency-Key, then announced to the session's streams. The
     * announcement comes after the commit, so no stream sees a message that was not stored; a
     * repeat announces again, which streams ignore (they emit each `seq` once).
     */
    const postOnce = (caller: Principal, sessionId: string, input: PostMessage, idempotencyKey: string | undefined) =>
      // Without a key there is nothing to remember, so the body is not encoded for a hash.
      (idempotencyKey === undefined
        ? post(caller, sessionId, input)
        : idempotency.run({
          scope: `tenant:${caller.tenantId}`,
          key: idempotencyKey,
          operation: "messages.post",
          body: { session_id: sessionId, ...encodePost(input) },
          result: Message,
          write: postAlone(caller, sessionId, input)
        })).pipe(Effect.tap((message) => events.messagePosted(caller.tenantId, message)))

    return { post, postOnce, list } as const
  }),
  dependencies: [MessagesRepo.Default]
}) {}
