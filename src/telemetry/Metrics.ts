/** The application's metrics (SPEC §7), defined once; every module that feeds one imports it from here. */
import { Metric, MetricBoundaries, MetricLabel } from "effect"

/**
 * `metric` with the given labels, built once per distinct set of label values: tagging builds a new
 * metric key (and hashes it) on every call, which on a per-request path cost more than the update.
 * The label values are bounded (routes, statuses, codes), and so is this memo.
 */
export const labelled = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>, names: ReadonlyArray<string>) => {
  const built = new Map<string, Metric.Metric<Type, In, Out>>()
  return (...values: ReadonlyArray<string>): Metric.Metric<Type, In, Out> => {
    const key = values.join("\u0000")
    let tagged = built.get(key)
    if (tagged === undefined) {
      tagged = Metric.taggedWithLabels(metric, names.map((name, i) => MetricLabel.make(name, values[i] ?? "")))
      built.set(key, tagged)
    }
    return tagged
  }
}

/** The OpenTelemetry HTTP semantic conventions' buckets, in seconds. */
export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

export const httpServerRequestDuration = Metric.histogram(
  "http.server.request.duration",
  MetricBoundaries.fromIterable(HTTP_DURATION_BUCKETS),
  "Duration of HTTP server requests, in seconds"
)

export const errorsTotal = Metric.counter("bulwark_errors_total", { description: "Error responses, by code and status", incremental: true })

export const ledgerDroppedTotal = Metric.counter("bulwark_ledger_dropped_total", {
  description: "Error records the ledger could not write (each went to stderr instead)",
  incremental: true
})

export const dependencyUp = Metric.gauge("bulwark_dependency_up", { description: "1 when the dependency serves, 0 when not" })

export const breakerState = Metric.gauge("bulwark_breaker_state", {
  description: "Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled"
})

export const breakerTransitionsTotal = Metric.counter("bulwark_breaker_transitions_total", {
  description: "Circuit breaker state transitions",
  incremental: true
})

export const backgroundRestartsTotal = Metric.counter("bulwark_background_restarts_total", {
  description: "Background loops restarted after a failure or defect, by loop",
  incremental: true
})

export const retriesTotal = Metric.counter("bulwark_retries_total", { description: "Retried dependency calls", incremental: true })

export const rateLimitFallbacksTotal = Metric.counter("bulwark_rate_limit_fallbacks_total", {
  description: "Rate-limit checks counted in process because the shared store could not serve",
  incremental: true
})

export const eventStreamsOpen = Metric.gauge("bulwark_event_streams_open", {
  description: "Session event streams (SSE) currently open in this process"
})

export const eventPublishFailuresTotal = Metric.counter("bulwark_event_publish_failures_total", {
  description: "Session events that could not be sent to other processes (their subscribers catch up from the database)",
  incremental: true
})

export const eventLoopDelay = Metric.histogram(
  "bulwark_event_loop_delay_seconds",
  MetricBoundaries.fromIterable([0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
  "How late the event-loop monitor's 10 ms timer fired, in seconds: time this process could not run ready work"
)

export const keptKeysTrusted = Metric.gauge("bulwark_kept_keys_trusted", {
  description: "1 while this process can tell whether API keys changed (it may use the keys it kept), 0 while it reads every key from the database"
})

export const writeBatchSize = Metric.histogram(
  "bulwark_write_batch_size",
  MetricBoundaries.fromIterable([1, 2, 4, 8, 16, 32, 64]),
  "Rows written per group-committed transaction, by kind of write"
)

export const writeBatchSplitsTotal = Metric.counter("bulwark_write_batch_splits_total", {
  description: "Group-committed batches that failed on a row and were written again row by row, by kind of write",
  incremental: true
})

export const eventStreamCap = Metric.gauge("bulwark_event_stream_cap", {
  description: "The most event streams open at once, per API key (scope=key) and per process (scope=process)"
})
