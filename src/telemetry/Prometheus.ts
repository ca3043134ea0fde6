/** Renders Effect's metric registry in the Prometheus text exposition format (for `/metrics`). */
import { Metric, MetricKeyType, type MetricPair, MetricState, Option } from "effect"
import { Effect } from "effect"

const metricName = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_")
const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const formatNumber = (n: number | bigint) => (n === Infinity ? "+Inf" : String(n))

const labels = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, extra?: readonly [string, string]) => {
  const all = [...tags.map((tag) => [tag.key, tag.value] as const), ...(extra === undefined ? [] : [extra])]
  return all.length === 0 ? "" : `{${all.map(([key, value]) => `${metricName(key)}="${escapeLabel(value)}"`).join(",")}}`
}

const typeOf = (keyType: MetricPair.MetricPair.Untyped["metricKey"]["keyType"]) =>
  MetricKeyType.isCounterKey(keyType)
    ? (keyType.incremental ? "counter" : "gauge")
    : MetricKeyType.isGaugeKey(keyType)
    ? "gauge"
    : MetricKeyType.isHistogramKey(keyType)
    ? "histogram"
    : "untyped"

export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const byName = new Map<string, Array<MetricPair.MetricPair.Untyped>>()
  for (const pair of pairs) byName.set(pair.metricKey.name, [...(byName.get(pair.metricKey.name) ?? []), pair])
  const lines: Array<string> = []
  for (const [raw, series] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    const name = metricName(raw)
    const key = series[0]!.metricKey
    const help = Option.getOrUndefined(key.description)
    if (help !== undefined) lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`)
    lines.push(`# TYPE ${name} ${typeOf(key.keyType)}`)
    for (const { metricKey, metricState } of series) {
      if (MetricState.isCounterState(metricState)) lines.push(`${name}${labels(metricKey.tags)} ${formatNumber(metricState.count)}`)
      else if (MetricState.isGaugeState(metricState)) lines.push(`${name}${labels(metricKey.tags)} ${formatNumber(metricState.value)}`)
      else if (MetricState.isHistogramState(metricState)) {
        for (const [le, count] of metricState.buckets) lines.push(`${name}_bucket${labels(metricKey.tags, ["le", formatNumber(le)])} ${count}`)
        lines.push(`${name}_sum${labels(metricKey.tags)} ${metricState.sum}`, `${name}_count${labels(metricKey.tags)} ${metricState.count}`)
      }
    }
  }
  return lines.join("\n") + "\n"
}

export const prometheusText = Effect.map(Metric.snapshot, renderPrometheus)
