/**
 * The error ledger (SPEC §6). `record` is the one recording path every failure goes through (HTTP
 * responses, stream errors, background jobs, defects): it assigns or reuses the `error_id`,
 * sanitises, sets type, severity and fingerprint, logs one line, counts the metric, and hands the
 * row to a queue. A background fiber writes the queue in batches, so a request never waits on the
 * ledger; a batch that cannot be written becomes one JSON line per error on stderr and counts
 * `bulwark_ledger_dropped_total`. The queue is bounded (10,000 rows by default): a row that finds it
 * full takes the same stderr path at once, so a storm can cost the ledger rows but never stall the
 * request that recorded them. Closing the layer (SIGTERM) writes what is still queued.
 */
import { Cause, Chunk, Clock, Context, Duration, Effect, FiberRef, LogLevel, Metric, Option, Queue, Schedule, type Scope } from "effect"
import * as DefaultServices from "effect/DefaultServices"
import { identity } from "effect/Function"
import * as Supervised from "../layers/resilience/Supervised.js"
import type { ErrorRecord, ListErrorsFilter, ListGroupsFilter } from "../src/domain/ErrorRecord.js"
import { sha256Hex } from "../src/Digests.js"
import { type AppError, DbOperational, Internal, NotFound, Overloaded, serverMessageOf, stackOf, statusOf } from "../src/errors.js"
import { errorsTotal, labelled, ledgerDroppedTotal } from "../src/telemetry/Metrics.js"
import { logFields } from "../src/telemetry/Logging.js"
import { type SanitizedPayload, sanitizeText } from "../src/telemetry/Sanitize.js"
import { newIdSync, nowIso } from "./Clock.js"
import { ErrorsRepo, isUnreadable, type LedgerRow } from "./ErrorsRepo.js"

/** What is known about where an error happened; all optional outside a request. */
export interface ErrorContext {
  readonly errorId?: string | undefined
  /** Overrides the type derived from the tag (e.g. `stream` for a failure mid-SSE). */
  readonly type?: ErrorRecord["type"] | undefined
  readonly requestId?: string | undefined
  readonly traceId?: string | undefined
  readonly method?: string | undefined
  readonly route?: string | undefined
  readonly userAgent?: string | undefined
  readonly tenantId?: string | undefined
  readonly sessionId?: string | undefined
  /** Already sanitised and cut to 8 KiB, labelled with what was kept. */
  readonly requestPayload?: SanitizedPayload | null | undefined
  /** Overrides the severity derived from the status (a tolerated cache failure is a warning). */
  readonly severity?: ErrorRecord["severity"] | undefined
}

export const typeOf = (error: AppError): ErrorRecord["type"] => {
  switch (error._tag) {
    case "ValidationFailed":
    case "PayloadTooLarge":
    case "UnsupportedMediaType":
      return "validation"
    case "Unauthenticated":
    case "Forbidden":
      return "auth"
    case "DbOperational":
      return "database"
    case "CacheUnavailable":
      return "cache"
    case "MemoryUnavailable":
      return "memory"
    case "Internal":
      return "internal"
    case "NotFound":
    case "MethodNotAllowed":
    case "Conflict":
    case "RateLimited":
    case "Overloaded":
    case "Timeout":
      return "http"
  }
}

/** Defects are critical, other 5xx errors, 4xx warnings. */
export const severityOf = (error: AppError): ErrorRecord["severity"] =>
  error._tag === "Internal" ? "critical" : statusOf(error) >= 500 ? "error" : "warning"

/** The first stack frame, without line and column, so a fingerprint survives unrelated edits. */
const topFrameOf = (stack: string | null): string => {
  const frame = stack?.split("\n").find((line) => line.trim().startsWith("at "))
  return frame === undefined ? "" : frame.trim().replace(/:\d+(:\d+)?\)?$/, "").replace(/^at\s+/, "")
}

const fingerprintSource = (code: string, route: string | undefined, stack: string | null): string => `${code}|${route ?? "-"}|${topFrameOf(stack)}`

export const fingerprintOf = (code: string, route: string | undefined, stack: string | null): string =>
  sha256Hex(fingerprintSource(code, route, stack)).slice(0, 16)

/** Fingerprints a ledger has computed: an error storm repeats a handful of them (bounded, oldest out first). */
const MAX_FINGERPRINTS = 1_000

const fingerprintMemo = () => {
  const known = new Map<string, string>()
  return (code: string, route: string | undefined, stack: string | null): string => {
    const source = fingerprintSource(code, route, stack)
    let fingerprint = known.get(source)
    if (fingerprint === undefined) {
      fingerprint = sha256Hex(source).slice(0, 16)
      known.set(source, fingerprint)
      if (known.size > MAX_FINGERPRINTS) known.delete(known.keys().next().value!)
    }
    return fingerprint
  }
}

/** A user agent is kept to this many characters: headers may be far longer than anything worth keeping. */
const MAX_USER_AGENT_LENGTH = 1024

export interface ErrorLedgerOptions {
  readonly retentionDays: number
  readonly batchSize?: number
  readonly queueCapacity?: number
  readonly purgeEvery?: Duration.DurationInput
  /** How long the writer waits after the first row of a batch for more rows (0 under TestClock). */
  readonly linger?: Duration.DurationInput
  /** How long a batch may wait for a locked or breaker-guarded database before it is dropped. */
  readonly patience?: Duration.DurationInput
  /**
   * Each row is written at once, and neither the writer loop nor the retention job runs: for a
   * one-shot process (the CLI), whose background work would outlive its purpose.
   */
  readonly inline?: boolean
}

/** One line on stderr for an error the ledger could not keep; never throws. */
const writeFallback = (stderr: NodeJS.WriteStream, row: LedgerRow, reason: string) => {
  stderr.write(JSON.stringify({ ledger: "dropped", reason, ...row }) + "\n")
}

const describeWriteFailure = (cause: Cause.Cause<AppError>): string =>
  Option.match(Cause.failureOption(cause), {
    onNone: () => "the ledger write failed with a defect",
    onSome: (error) => sanitizeText(serverMessageOf(error))
  })

const errorsByCode = labelled(errorsTotal, ["code", "status"])

/** What the rest of the process sees of the ledger. */
export interface ErrorLedgerShape {
  /**
   * Records one failure and answers its `error_id` (the context's, or a new UUID v7) at once: the row
   * is queued for the writer, never written on the caller's time. When the queue is full the row
   * becomes one line on stderr and counts `bulwark_ledger_dropped_total`; the caller is not slowed.
   */
  readonly record: (error: AppError, context?: ErrorContext) => Effect.Effect<string>
  /** Deletes rows past the retention period (also run hourly); answers how many. */
  readonly purgeExpired: Effect.Effect<number>
}

const make = (options: ErrorLedgerOptions): Effect.Effect<ErrorLedgerShape, never, ErrorsRepo | Scope.Scope> =>
  Effect.gen(function*() {
    const repo = yield* ErrorsRepo
    const fingerprint = fingerprintMemo()
    const batchSize = options.batchSize ?? 500
    const queue = yield* Queue.dropping<LedgerRow>(options.queueCapacity ?? 10_000)
    // Bun opens a descriptor for `process.stderr` the first time it is read. Opened here, at start,
    // the fallback costs no new descriptor in the middle of an outage (when descriptors may be what
    // ran out), and a process's descriptor count stays at its baseline after one.
    const stderr = process.stderr

    const drop = (rows: ReadonlyArray<LedgerRow>, reason: string) =>
      Effect.zipRight(
        Effect.sync(() => rows.forEach((row) => writeFallback(stderr, row, reason))),
        Metric.incrementBy(ledgerDroppedTotal, rows.length)
      )

    // A locked database, an open breaker or a full write bulkhead passes: the batch waits a little
    // before it is dropped (the rows of an `OVERLOADED` storm are written when the writes drain). A
    // missing table does not, so a ledger that is really down falls back to stderr at once.
    const passing = (error: unknown) =>
      (error instanceof DbOperational && (error.transient || error.reason === "breaker_open")) || error instanceof Overloaded
    const patience = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(6)), Schedule.upTo(options.patience ?? "6 seconds"))

    const writeBatch = (rows: ReadonlyArray<LedgerRow>, retry: boolean) =>
      rows.length === 0
        ? Effect.void
        : repo.insertBatch(rows).pipe(
          retry ? Effect.retry({ schedule: patience, while: passing }) : identity,
          Effect.catchAllCause((cause) => drop(rows, describeWriteFailure(cause))),
          Effect.uninterruptible
        )

    // After the first row of a batch, wait `linger` for more: one row per commit costs about 20
    // times what a row costs in a batch of 100, and an error storm is when that matters.
    const linger = Duration.decode(options.linger ?? "20 millis")
    const gather = (first: Chunk.Chunk<LedgerRow>) =>
      Duration.toMillis(linger) === 0 || Chunk.size(first) >= batchSize
        ? Effect.succeed(first)
        : Effect.map(Effect.delay(Queue.takeUpTo(queue, batchSize - Chunk.size(first)), linger), (rest) => Chunk.appendAll(first, rest))
    // Once rows are taken they are written, even when shutdown interrupts the writer meanwhile
    // (it then waits at most `linger`); only the wait for the first row is interruptible.
    const inline = options.inline === true
    if (!inline) yield* Effect.uninterruptibleMask((restore) =>
      restore(Queue.takeBetween(queue, 1, batchSize)).pipe(
        Effect.flatMap(gather),
        Effect.flatMap((batch) => writeBatch(Chunk.toReadonlyArray(batch), true))
      )
    ).pipe(
      Effect.forever,
      Supervised.loop("ledger-writer"),
      Effect.forkScoped
    )
    // Runs before the writer is interrupted: whatever is still queued at shutdown is written.
    if (!inline) yield* Effect.addFinalizer(() => Effect.flatMap(Queue.takeAll(queue), (rest) => writeBatch(Chunk.toReadonlyArray(rest), false)))

    // Every error response passes here: one step, with no effect inside unless the row cannot be
    // queued, and the log line only built at its level.
    const record = (error: AppError, context: ErrorContext = {}): Effect.Effect<string> =>
      Effect.withFiberRuntime((fiber) => {
        const errorId = context.errorId ?? newIdSync()
        const millis = Context.get(fiber.getFiberRef(DefaultServices.currentServices), Clock.Clock).unsafeCurrentTimeMillis()
        const status = statusOf(error)
        const stack = stackOf(error)
        const row: LedgerRow = {
          error_id: errorId,
          occurred_at: new Date(millis).toISOString(),
          type: context.type ?? typeOf(error),
          code: error.code,
          status,
          message: sanitizeText(serverMessageOf(error)),
          stack: stack === null ? null : sanitizeText(stack),
          fingerprint: fingerprint(error.code, context.route, stack),
          severity: context.severity ?? severityOf(error),
          tenant_id: context.tenantId ?? null,
          session_id: context.sessionId ?? null,
          request_id: context.requestId ?? null,
          trace_id: context.traceId ?? null,
          method: context.method ?? null,
          route: context.route ?? null,
          user_agent: context.userAgent === undefined ? null : sanitizeText(context.userAgent).slice(0, MAX_USER_AGENT_LENGTH),
          request_payload: context.requestPayload?.text ?? null,
          request_payload_kind: context.requestPayload?.kind ?? null
        }
        const level = row.severity === "warning" ? LogLevel.Warning : LogLevel.Error
        // Below the configured level the line is not built at all (its annotations are not free).
        if (LogLevel.greaterThanEqual(level, fiber.getFiberRef(FiberRef.currentMinimumLogLevel))) {
          logFields(fiber, level, row.message, {
            error_id: errorId,
            code: row.code,
            status,
            severity: row.severity,
            trace_id: row.trace_id,
            request_id: row.request_id,
            route: row.route
          }, millis)
        }
        errorsByCode(row.code, String(status)).unsafeUpdate(1, fiber.getFiberRef(FiberRef.currentMetricLabels))
        if (inline) return Effect.as(writeBatch([row], false), errorId)
        return queue.unsafeOffer(row) ? Effect.succeed(errorId) : Effect.as(drop([row], "the ledger queue is full"), errorId)
      })

    /** Deletes rows past the retention period; its own failure goes through `record` like any other. */
    const purgeExpired = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const cutoff = new Date(now - options.retentionDays * 86_400_000).toISOString()
      const deleted = yield* repo.purgeOlderThan(cutoff)
      if (deleted > 0) yield* Effect.logInfo(`error ledger retention deleted ${deleted} rows older than ${cutoff}`)
      return deleted
    }).pipe(
      Effect.catchAll((error) => Effect.as(record(error, { route: "job:error-retention" }), 0)),
      Effect.withSpan("ErrorLedger.purgeExpired")
    )

    if (!inline) {
      yield* purgeExpired.pipe(Effect.repeat(Schedule.spaced(options.purgeEvery ?? "1 hour")), Supervised.loop("ledger-retention"), Effect.forkScoped)
    }

    // From here on, a background loop's failure anywhere in the process is also a ledger row.
    const failures = yield* Effect.serviceOption(Supervised.BackgroundFailures)
    if (Option.isSome(failures)) {
      yield* failures.value.attach((loop, cause) =>
        Effect.asVoid(record(new Internal({ reason: `background loop ${loop} failed`, cause: Cause.squash(cause) }), { route: `job:${loop}` }))
      )
    }

    return { record, purgeExpired } as const
  })

/** The ledger's writer and retention job live as long as its layer: `ErrorLedger.Default(options)`. */
export class ErrorLedger extends Effect.Service<ErrorLedger>()("bulwark/ErrorLedger", { scoped: make }) {}

/** Unreadable rows already reported by this process: each is ledgered once, not on every read. */
const MAX_REPORTED_UNREADABLE = 1_000

/**
 * The operators' side of the ledger: find, filter, resolve, count. A stored row that does not read
 * back whole is still shown (see `toRecord`), and that failure is ledgered once per row, as a defect:
 * the ledger wrote something it cannot read.
 */
export class ErrorRecords extends Effect.Service<ErrorRecords>()("bulwark/ErrorRecords", {
  effect: Effect.gen(function*() {
    const repo = yield* ErrorsRepo
    const ledger = yield* ErrorLedger
    const reported = new Set<string>()
    const notFound = (errorId: string) =>
      new NotFound({ code: "ERROR_NOT_FOUND", detail: `No error record ${errorId} exists.` })

    const reportUnreadable = (records: ReadonlyArray<ErrorRecord>) =>
      Effect.forEach(
        records.filter((record) => isUnreadable(record) && !reported.has(record.error_id)),
        (record) => {
          reported.add(record.error_id)
          if (reported.size > MAX_REPORTED_UNREADABLE) reported.delete(reported.values().next().value!)
          const what = [...(record.unreadable_fields ?? []), ...(record.request_payload_kind === "unreadable" ? ["request_payload"] : [])]
          return ledger.record(
            new Internal({
              reason: "a ledger row did not read back whole",
              cause: new Error(`error record ${record.error_id}: unreadable ${what.join(", ")}`)
            }),
            { type: "database", route: "ledger:read" }
          )
        },
        { discard: true }
      ).pipe(Effect.as(records))

    const get = Effect.fn("ErrorRecords.get")(function*(errorId: string) {
      const record = yield* repo.find(errorId)
      if (Option.isNone(record)) return yield* notFound(errorId)
      yield* reportUnreadable([record.value])
      return record.value
    })

    const list = Effect.fn("ErrorRecords.list")(function*(filter: ListErrorsFilter) {
      return yield* Effect.flatMap(repo.list(filter), reportUnreadable)
    })

    const resolve = Effect.fn("ErrorRecords.resolve")(function*(errorId: string, notes: string | undefined) {
      const record = yield* repo.resolve(errorId, notes ?? null, yield* nowIso)
      if (Option.isNone(record)) return yield* notFound(errorId)
      yield* reportUnreadable([record.value])
      return record.value
    })

    const stats = Effect.fn("ErrorRecords.stats")(function*(since: Date | undefined) {
      const sinceIso = since?.toISOString() ?? new Date(0).toISOString()
      const counts = yield* repo.stats(sinceIso)
      yield* reportUnreadable(Option.toArray(counts.last))
      return {
        since: since?.toISOString() ?? null,
        total: Object.values(counts.bySeverity).reduce((sum, n) => sum + n, 0),
        by_code: counts.byCode,
        by_status: counts.byStatus,
        by_severity: counts.bySeverity,
        unresolved_count: counts.unresolved,
        last_error: Option.getOrNull(counts.last)
      }
    })

    const groups = Effect.fn("ErrorRecords.groups")(function*(filter: ListGroupsFilter) {
      return yield* repo.groups(filter, yield* Clock.currentTimeMillis)
    })

    /**
     * Resolves the rows of a group as they are now; an error of its fingerprint recorded later is
     * unresolved, which is what reopens the group.
     */
    const resolveGroup = Effect.fn("ErrorRecords.resolveGroup")(function*(fingerprint: string, notes: string | undefined) {
      yield* repo.resolveGroup(fingerprint, notes ?? null, yield* nowIso)
      const [group] = yield* repo.groups({ fingerprint }, yield* Clock.currentTimeMillis)
      if (group === undefined) return yield* new NotFound({ code: "ERROR_NOT_FOUND", detail: `No error group ${fingerprint} exists.` })
      return group
    })

    return { get, list, resolve, stats, groups, resolveGroup } as const
  }),
  dependencies: [ErrorsRepo.Default]
}) {}
