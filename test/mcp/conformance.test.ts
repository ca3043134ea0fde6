/**
 * The official MCP conformance suite's active server scenarios against a real Bulwark (through
 * `bun run conformance`, which puts a credential-adding proxy in front). It must pass every
 * scenario not listed, with its reason, in conformance/expected-failures.yml.
 */
import { expect, test } from "bun:test"
import { join } from "node:path"

test("the conformance suite passes every scenario outside its expected-failures baseline", async () => {
  const run = Bun.spawn([process.execPath, join(import.meta.dir, "conformance/run.ts")], { stdout: "pipe", stderr: "pipe" })
  const [output, errors, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited])
  const plain = output.replaceAll(/\x1b\[[0-9;]*m/g, "")
  if (code !== 0) console.error(plain.slice(-4000), errors.slice(-2000))
  expect(code).toBe(0)
  expect(plain).toContain("Baseline check passed")
  for (const scenario of ["server-initialize", "ping", "tools-list", "server-sse-multiple-streams", "resources-list", "dns-rebinding-protection"]) {
    expect(plain).toMatch(new RegExp(`✓ ${scenario}: [1-9]\\d* passed, 0 failed`))
  }
}, 120_000)
