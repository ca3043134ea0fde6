/** Group commit's own rules, with a fake writer: what forms a batch and who gets which answer. */
import { describe, expect, test } from "bun:test"
import { Cause, Deferred, Effect, Exit, Fiber } from "effect"
import * as GroupCommit from "../../layers/database/GroupCommit.js"

class Locked {
  readonly _tag = "Locked"
}

interface Writer {
  readonly batches: Array<ReadonlyArray<string>>
  readonly alone: Array<string>
}

const make = (options: { readonly maxBatch?: number; readonly failBatch?: "row" | "shared"; readonly gate?: Deferred.Deferred<void> }) => {
  const writer: Writer = { batches: [], alone: [] }
  const program = GroupCommit.make<string, string, Locked>({
    name: "test",
    maxBatch: options.maxBatch ?? 64,
    writeBatch: (items) =>
      Effect.gen(function*() {
        writer.batches.push(items)
        if (options.gate !== undefined) yield* Deferred.await(options.gate)
        if (options.failBatch === "shared") return yield* Effect.fail(new Locked())
        if (options.failBatch === "row" && items.includes("bad")) return yield* Effect.die(new Error("constraint"))
        return items.map((item) => `stored ${item}`)
      }),
    writeOne: (item) => {
      writer.alone.push(item)
      return item === "bad" ? Effect.die(new Error("constraint")) : Effect.succeed(`alone ${item}`)
    },
    isShared: (error) => error instanceof Locked
  })
  return { writer, program }
}

const submitAll = (commit: GroupCommit.GroupCommit<string, string, Locked>, items: ReadonlyArray<string>) =>
  Effect.forEach(items, (item) => Effect.exit(commit.submit(item)), { concurrency: "unbounded" })

describe("GroupCommit", () => {
  test("calls made in one turn are written as one batch, each answered with its own result", async () => {
    const { program, writer } = make({})
    const exits = await Effect.runPromise(Effect.flatMap(program, (commit) => submitAll(commit, ["a", "b", "c", "d"])))
    expect(writer.batches).toEqual([["a", "b", "c", "d"]])
    expect(exits).toEqual(["a", "b", "c", "d"].map((item) => Exit.succeed(`stored ${item}`)))
  })

  test("calls of a later turn form the next batch", async () => {
    const { program, writer } = make({})
    await Effect.runPromise(Effect.flatMap(program, (commit) =>
      Effect.zipRight(submitAll(commit, ["a", "b"]), submitAll(commit, ["c"]))))
    expect(writer.batches).toEqual([["a", "b"], ["c"]])
  })

  test("a full batch is written at once and the next one opens", async () => {
    const { program, writer } = make({ maxBatch: 3 })
    await Effect.runPromise(Effect.flatMap(program, (commit) => submitAll(commit, ["a", "b", "c", "d", "e", "f", "g"])))
    expect(writer.batches).toEqual([["a", "b", "c"], ["d", "e", "f"], ["g"]])
  })

  test("a batch that fails on a row is written again row by row: only that row's caller fails", async () => {
    const { program, writer } = make({ failBatch: "row" })
    const exits = await Effect.runPromise(Effect.flatMap(program, (commit) => submitAll(commit, ["a", "bad", "c"])))
    expect(writer.alone).toEqual(["a", "bad", "c"])
    expect(exits[0]).toEqual(Exit.succeed("alone a"))
    expect(Exit.isFailure(exits[1]!) && Cause.isDie(exits[1].cause)).toBe(true)
    expect(exits[2]).toEqual(Exit.succeed("alone c"))
  })

  test("a failure of the database itself is every caller's, and nothing is written again", async () => {
    const { program, writer } = make({ failBatch: "shared" })
    const exits = await Effect.runPromise(Effect.flatMap(program, (commit) => submitAll(commit, ["a", "b"])))
    expect(writer.alone).toEqual([])
    expect(exits).toEqual([Exit.fail(new Locked()), Exit.fail(new Locked())])
  })

  test("a caller that leaves does not cancel the batch: the others are answered after the commit", async () => {
    const gate = Deferred.unsafeMake<void>(undefined as never)
    const { program, writer } = make({ gate })
    const exit = await Effect.runPromise(Effect.gen(function*() {
      const commit = yield* program
      const leaving = yield* Effect.fork(commit.submit("leaves"))
      const staying = yield* Effect.fork(commit.submit("stays"))
      // Both are in the batch once it is being written; then one caller is interrupted.
      while (writer.batches.length === 0) yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      yield* Fiber.interrupt(leaving)
      yield* Deferred.succeed(gate, undefined)
      return yield* Fiber.await(staying)
    }))
    expect(writer.batches).toEqual([["leaves", "stays"]])
    expect(exit).toEqual(Exit.succeed("stored stays"))
  })
})
