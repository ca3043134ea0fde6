/**
 * Group commit: small writes that arrive within one event-loop turn are written together, in one
 * transaction, so a busy process pays one commit (and one pass through the write guards) for many
 * rows. Each caller still gets its own answer: a batch that fails for a reason that may be one row's
 * is written again row by row, each in its own transaction; a failure of the database itself
 * (unreachable, locked, overloaded) is every caller's answer, as it would have been one by one.
 *
 * The batch is run by a fiber no caller owns, so a caller that leaves (a client disconnect, a
 * deadline) never cancels the other callers' rows; its own row may still commit, as a write whose
 * reply was lost would. A caller is answered only after the batch's commit.
 */
import { Cause, Context, Effect, Exit, Metric, Option, Runtime, Tracer } from "effect"
import { writeBatchSize, writeBatchSplitsTotal } from "../../src/telemetry/Metrics.js"

export interface GroupCommitOptions<I, A, E> {
  /** Names the batch in metrics. */
  readonly name: string
  /** Rows per transaction at most; a batch that fills is written at once and the next one opens. */
  readonly maxBatch: number
  /** Writes every item in one transaction; one result per item, in the items' order. */
  readonly writeBatch: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<A>, E>
  /** Writes one item in its own transaction: the fallback when a batch failed for a reason that may be one item's. */
  readonly writeOne: (item: I) => Effect.Effect<A, E>
  /** A failure that is the dependency's, not a row's: every caller of the batch gets it, nothing is written again. */
  readonly isShared: (error: E) => boolean
}

export interface GroupCommit<I, A, E> {
  readonly submit: (item: I) => Effect.Effect<A, E>
}

interface Waiting<I, A, E> {
  readonly item: I
  readonly resume: (exit: Exit.Exit<A, E>) => void
  /** The caller's span, linked from the batch's (a batch has many parents, so it is a root with links). */
  readonly span: Tracer.AnySpan | undefined
}

export const make = <I, A, E>(options: GroupCommitOptions<I, A, E>): Effect.Effect<GroupCommit<I, A, E>> =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    const runFork = Runtime.runFork(runtime)
    const batchSize = Metric.tagged(writeBatchSize, "write", options.name)
    const splits = Metric.tagged(writeBatchSplitsTotal, "write", options.name)
    let open: Array<Waiting<I, A, E>> | undefined

    const answerEach = (batch: ReadonlyArray<Waiting<I, A, E>>) =>
      Effect.forEach(batch, (waiting) => Effect.map(Effect.exit(options.writeOne(waiting.item)), waiting.resume), { discard: true })

    const write = (batch: ReadonlyArray<Waiting<I, A, E>>) =>
      Effect.zipRight(
        Metric.update(batchSize, batch.length),
        Effect.exit(options.writeBatch(batch.map((waiting) => waiting.item)))
      ).pipe(
        Effect.withSpan(`GroupCommit.${options.name}`, {
          root: true,
          attributes: { "bulwark.batch.size": batch.length },
          links: batch.flatMap((waiting): Array<Tracer.SpanLink> => waiting.span === undefined ? [] : [{ _tag: "SpanLink", span: waiting.span, attributes: {} }])
        }),
        Effect.flatMap((exit) => {
          if (Exit.isSuccess(exit)) {
            if (exit.value.length !== batch.length) {
              return Effect.sync(() => batch.forEach((waiting) => waiting.resume(Exit.die(new Error(`${options.name}: a batch of ${batch.length} answered ${exit.value.length} results`)))))
            }
            return Effect.sync(() => batch.forEach((waiting, i) => waiting.resume(Exit.succeed(exit.value[i]!))))
          }
          const failure = Cause.failureOption(exit.cause)
          const shared = Option.isSome(failure) && options.isShared(failure.value)
          if (batch.length === 1 || shared || Cause.isInterruptedOnly(exit.cause)) {
            const failed = Exit.failCause(exit.cause)
            return Effect.sync(() => batch.forEach((waiting) => waiting.resume(failed)))
          }
          // One row may have failed the whole batch (a constraint, a bug): each is written alone, so
          // that only that row's caller gets the failure.
          return Effect.zipRight(Metric.increment(splits), answerEach(batch))
        }),
        // Nothing above can fail; a defect in it must still answer every caller rather than strand them.
        Effect.catchAllCause((cause) => Effect.sync(() => batch.forEach((waiting) => waiting.resume(Exit.failCause(cause)))))
      )

    const close = (batch: Array<Waiting<I, A, E>>) => {
      if (open === batch) open = undefined
      runFork(write(batch))
    }

    const submit = (item: I): Effect.Effect<A, E> =>
      Effect.contextWithEffect((context: Context.Context<never>) => Effect.async<A, E>((resume) => {
        const waiting: Waiting<I, A, E> = { item, resume, span: Context.getOption(context, Tracer.ParentSpan).pipe(Option.getOrUndefined) }
        if (open === undefined) {
          const batch = [waiting]
          open = batch
          // Callers that reach this point in the same turn join; the batch is written once the turn's
          // ready work has run.
          setImmediate(() => {
            if (open === batch) close(batch)
          })
        } else {
          open.push(waiting)
          if (open.length >= options.maxBatch) close(open)
        }
      }))

    return { submit }
  })
