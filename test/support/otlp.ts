/** A real OTLP/HTTP JSON receiver on a random loopback port, recording what arrives. */

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: number
  readonly attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
  readonly status: { code: number; message?: string }
  readonly events: ReadonlyArray<{ name: string; attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }> }>
}

export interface Receiver {
  readonly url: string
  readonly bodies: { traces: Array<string>; metrics: Array<string> }
  /** "ok" answers 200, "unavailable" answers 503 to every export. */
  mode: "ok" | "unavailable"
  readonly spans: () => Array<ReceivedSpan>
  readonly metricNames: () => Set<string>
  readonly stop: () => void
}

export const startReceiver = (): Receiver => {
  const bodies = { traces: [] as Array<string>, metrics: [] as Array<string> }
  const receiver: Receiver = {
    url: "",
    bodies,
    mode: "ok",
    spans: () =>
      bodies.traces.flatMap((body) =>
        (JSON.parse(body).resourceSpans ?? []).flatMap((resource: any) =>
          (resource.scopeSpans ?? []).flatMap((scope: any) => scope.spans ?? [])
        )
      ),
    metricNames: () =>
      new Set(
        bodies.metrics.flatMap((body) =>
          (JSON.parse(body).resourceMetrics ?? []).flatMap((resource: any) =>
            (resource.scopeMetrics ?? []).flatMap((scope: any) => (scope.metrics ?? []).map((metric: any) => metric.name as string))
          )
        )
      ),
    stop: () => server.stop(true)
  }
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      const path = new URL(request.url).pathname
      const body = await request.text()
      if (receiver.mode === "unavailable") return new Response("unavailable", { status: 503 })
      if (path === "/v1/traces") bodies.traces.push(body)
      else if (path === "/v1/metrics") bodies.metrics.push(body)
      return Response.json({})
    }
  })
  ;(receiver as { url: string }).url = `http://127.0.0.1:${server.port}`
  return receiver
}

export const attribute = (span: ReceivedSpan, key: string): unknown => {
  const value = span.attributes.find((attribute) => attribute.key === key)?.value
  if (value === undefined) return undefined
  return value.stringValue ?? (value.intValue === undefined ? value.boolValue ?? value.doubleValue : Number(value.intValue))
}
