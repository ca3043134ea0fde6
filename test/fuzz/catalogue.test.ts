/**
 * Every code of the catalogue (SPEC §3) is real: some HTTP test makes a real request that answers it
 * and checks the whole problem with `expectProblem`. A code no test reaches is either dead (remove
 * it from the catalogue) or untested (write the test); this fails until one of the two is done.
 */
import { expect, test } from "bun:test"
import { Glob } from "bun"
import { join } from "node:path"
import { problemTypes } from "../../src/errors.js"

const TESTS = join(import.meta.dir, "..")

test("every catalogue code is asserted through HTTP by some test", async () => {
  const sources: Array<string> = []
  for await (const file of new Glob("**/*.test.ts").scan(TESTS)) {
    // The unit tests of the table itself name every code without making a request.
    if (file === "errors.test.ts" || file.startsWith("fuzz/")) continue
    sources.push(await Bun.file(join(TESTS, file)).text())
  }
  const asserted = (code: string) =>
    sources.some((source) => new RegExp(`expectProblem\\([^;]*?"${code}"`, "s").test(source))
  const unreached = Object.keys(problemTypes).filter((code) => !asserted(code))
  expect(unreached).toEqual([])
})
