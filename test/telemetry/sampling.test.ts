/**
 * OTEL_TRACES_SAMPLER_ARG (parent-based ratio sampling), through a real server exporting to a real
 * OTLP receiver: a caller's sampled flag is followed, a trace started here is kept with the ratio.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { sampledByRatio } from "../../src/telemetry/Sampler.js"
import { startReceiver, type Receiver } from "../support/otlp.js"
import { eventually, startServer, type TestServer } from "../support/server.js"

const traceparent = (traceId: string, sampled: boolean) => `00-${traceId}-00f067aa0ba902b7-${sampled ? "01" : "00"}`
const randomTraceId = () => crypto.randomUUID().replaceAll("-", "")

describe("the ratio rule", () => {
  test("keeps a trace when the random low 56 bits of its id fall below the ratio", () => {
    expect(sampledByRatio("ffffffffffffffffff00000000000000", 0.5)).toBe(true)
    expect(sampledByRatio("0000000000000000007fffffffffffff", 0.5)).toBe(true)
    expect(sampledByRatio("00000000000000000080000000000000", 0.5)).toBe(false)
    expect(sampledByRatio("000000000000000000ffffffffffffff", 0.999)).toBe(false)
    expect(sampledByRatio("000000000000000000ffffffffffffff", 1)).toBe(true)
    expect(sampledByRatio("00000000000000000000000000000000", 0)).toBe(false)
  })

  test("keeps about the ratio of random traces", () => {
    const kept = Array.from({ length: 4000 }, randomTraceId).filter((id) => sampledByRatio(id, 0.25)).length
    expect(kept / 4000).toBeGreaterThan(0.2)
    expect(kept / 4000).toBeLessThan(0.3)
  })
})

describe("a server with OTEL_TRACES_SAMPLER_ARG=0", () => {
  let receiver: Receiver
  let server: TestServer

  beforeAll(async () => {
    receiver = startReceiver()
    server = await startServer({ otlpEndpoint: receiver.url, traceSampleRatio: 0 })
  })
  afterAll(async () => {
    await server.close()
    receiver.stop()
  })

  test("exports a trace its caller sampled, and neither one it starts itself nor one its caller did not sample", async () => {
    const unsampledByCaller = randomTraceId()
    const notSampled = await server.fetch("/health/live", { headers: { traceparent: traceparent(unsampledByCaller, false) } })
    expect(notSampled.headers.get("x-trace-id")).toBe(unsampledByCaller)
    const ownTrace = (await server.fetch("/health/live")).headers.get("x-trace-id")
    expect(ownTrace).toMatch(/^[0-9a-f]{32}$/)

    const sampledByCaller = randomTraceId()
    await server.fetch("/health/live", { headers: { traceparent: traceparent(sampledByCaller, true) } })
    const span = await eventually(async () => receiver.spans().find((s) => s.traceId === sampledByCaller && s.kind === 2), 5000)
    expect(span.name).toBe("GET /health/live")
    // Exported in the order they ended: what came before the sampled trace has been sent by now.
    const exported = new Set(receiver.spans().map((s) => s.traceId))
    expect(exported.has(unsampledByCaller)).toBe(false)
    expect(exported.has(ownTrace!)).toBe(false)
  })
})

describe("a server with the default ratio (1)", () => {
  test("exports every trace it starts, and still follows a caller that did not sample", async () => {
    const receiver = startReceiver()
    const server = await startServer({ otlpEndpoint: receiver.url })
    try {
      const unsampledByCaller = randomTraceId()
      await server.fetch("/health/live", { headers: { traceparent: traceparent(unsampledByCaller, false) } })
      const ownTrace = (await server.fetch("/health/live")).headers.get("x-trace-id")
      const span = await eventually(async () => receiver.spans().find((s) => s.traceId === ownTrace && s.kind === 2), 5000)
      expect(span.name).toBe("GET /health/live")
      expect(receiver.spans().some((s) => s.traceId === unsampledByCaller)).toBe(false)
    } finally {
      await server.close()
      receiver.stop()
    }
  })
})
