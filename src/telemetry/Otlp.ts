/**
 * OTLP/HTTP export of traces and metrics with `@effect/opentelemetry`'s own exporters (no
 * OpenTelemetry SDK), switched on by `OTEL_EXPORTER_OTLP_ENDPOINT`. Exports run on their own
 * fibers: a collector that is down, slow or answering 503 is retried by the exporter and never
 * slows or fails a request; every export request is cut after 5 s.
 */
import * as OtlpMetrics from "@effect/opentelemetry/OtlpMetrics"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import { FetchHttpClient, HttpClient, HttpClientError } from "@effect/platform"
import { Duration, Effect, Layer } from "effect"
import { parentBasedRatio } from "./Sampler.js"

export interface OtlpOptions {
  readonly endpoint: string
  readonly protocol: "http/json" | "http/protobuf"
  readonly serviceName: string
  readonly traceExportIntervalMillis: number
  readonly metricExportIntervalMillis: number
  readonly shutdownTimeout?: Duration.DurationInput
  /** OTEL_TRACES_SAMPLER_ARG: the share of traces started here that are exported (parent-based). */
  readonly sampleRatio?: number
}

const EXPORT_TIMEOUT = Duration.seconds(5)

const boundedHttpClient = Layer.effect(
  HttpClient.HttpClient,
  Effect.map(
    HttpClient.HttpClient,
    HttpClient.transform((response, request) =>
      Effect.timeoutFail(response, {
        duration: EXPORT_TIMEOUT,
        onTimeout: () => new HttpClientError.RequestError({ request, reason: "Transport", description: "OTLP export timed out" })
      })
    )
  )
).pipe(Layer.provide(FetchHttpClient.layer))

interface ExportedSpan {
  status?: { code: number; message?: string }
  attributes?: Array<{ key: string }>
}

/**
 * The exporter reports a successful span as OK (code 1); the HTTP conventions want it unset (0),
 * with ERROR kept for failures. It also labels every failed span as interrupted, which ours are not.
 */
const withConventionalStatus = (data: unknown): unknown => {
  const traces = data as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<ExportedSpan> }> }> }
  for (const resource of traces.resourceSpans ?? []) {
    for (const scope of resource.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        if (span.status?.code === 1) span.status = { code: 0 }
        if (span.attributes !== undefined) {
          span.attributes = span.attributes.filter((attribute) => attribute.key !== "span.label" && attribute.key !== "status.interrupted")
        }
      }
    }
  }
  return data
}

const serialization = (protocol: OtlpOptions["protocol"]) =>
  Layer.effect(
    OtlpSerialization.OtlpSerialization,
    Effect.map(OtlpSerialization.OtlpSerialization, (base) => ({
      ...base,
      traces: (data: any) => base.traces(withConventionalStatus(data) as any)
    }))
  ).pipe(Layer.provide(protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf))

export const layer = (options: OtlpOptions): Layer.Layer<never> => {
  const base = options.endpoint.replace(/\/+$/, "")
  const resource = { serviceName: options.serviceName }
  const shutdownTimeout = options.shutdownTimeout ?? Duration.seconds(3)
  return Layer.mergeAll(
    Layer.unwrapScoped(
      Effect.map(
        OtlpTracer.make({
          url: `${base}/v1/traces`,
          resource,
          exportInterval: Duration.millis(options.traceExportIntervalMillis),
          shutdownTimeout
        }),
        (tracer) => Layer.setTracer(parentBasedRatio(tracer, options.sampleRatio ?? 1))
      )
    ),
    OtlpMetrics.layer({
      url: `${base}/v1/metrics`,
      resource,
      exportInterval: Duration.millis(options.metricExportIntervalMillis),
      shutdownTimeout
    })
  ).pipe(Layer.provide(serialization(options.protocol)), Layer.provide(boundedHttpClient))
}
