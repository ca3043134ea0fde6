/**
 * Hot reads from a process of their own (so the harness's own sockets do not delay them): 8 at a
 * time against `URL` with `KEY`, until `COUNT` are done or a line arrives on stdin; prints the
 * latencies in ms as one JSON array.
 */
const url = process.env["URL"]!
const key = process.env["KEY"]!
const count = Number(process.env["COUNT"] ?? "0")
const latencies: Array<number> = []
let stopped = false
if (count === 0) {
  void (async () => {
    for await (const _ of Bun.stdin.stream()) {
      stopped = true
      break
    }
  })()
}
await Promise.all(Array.from({ length: 8 }, async () => {
  while (count === 0 ? !stopped : latencies.length < count) {
    const startedAt = performance.now()
    const response = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`hot read answered ${response.status}`)
    latencies.push(performance.now() - startedAt)
  }
}))
console.log(JSON.stringify(latencies))
process.exit(0)
export {}
