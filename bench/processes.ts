/**
 * Child processes of the harness: every one is tracked from spawn on, so that a failure, Ctrl-C or
 * SIGTERM still stops every server and load generator the run started.
 */
import type { Subprocess } from "bun"
import { closeSync, openSync, readFileSync } from "node:fs"

const running = new Set<Subprocess>()

export interface SpawnOptions {
  readonly cwd?: string
  readonly env: Record<string, string>
  /** Both stdout and stderr are appended here; servers are never left writing into a full pipe. */
  readonly logFile?: string
  /** The CPU core to run on (taskset), or null to let the scheduler choose. */
  readonly core: number | null
}

export const pinned = (core: number | null, command: ReadonlyArray<string>): Array<string> =>
  core === null ? [...command] : ["taskset", "-c", String(core), ...command]

/** Spawns a long-running process (a server); its output goes to its log file. */
export const spawnServer = (command: ReadonlyArray<string>, options: SpawnOptions & { readonly logFile: string }): Subprocess => {
  const log = openSync(options.logFile, "a")
  try {
    return track(Bun.spawn(pinned(options.core, command), {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      env: options.env,
      stdin: "ignore",
      stdout: log,
      stderr: log
    }))
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(log)
  }
}

/** Runs a command to completion and returns its exit code and output. */
export const runToEnd = async (
  command: ReadonlyArray<string>,
  options: SpawnOptions
): Promise<{ readonly exitCode: number; readonly stdout: string; readonly stderr: string }> => {
  const child = track(Bun.spawn(pinned(options.core, command), {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: options.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe"
  }))
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited
  ])
  return { exitCode, stdout, stderr }
}

const track = <P extends Subprocess>(child: P): P => {
  running.add(child)
  void child.exited.then(() => running.delete(child))
  return child
}

/** SIGTERM, then SIGKILL for whatever has not exited within the grace period. */
export const stopProcess = async (child: Subprocess, graceMillis = 3000): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(graceMillis).then(() => false)])
  if (!exited) {
    child.kill("SIGKILL")
    await child.exited
  }
}

export const stopAll = async (): Promise<void> => {
  await Promise.all([...running].map((child) => stopProcess(child)))
}

/** A port that was free a moment ago (the kernel picks it; the listener is closed at once). */
export const freePort = (): number => {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}

/** Resident set size in MB, from /proc/<pid>/status (Linux). */
export const rssMegabytes = (pid: number): number => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (match === null) throw new Error(`no VmRSS line in /proc/${pid}/status`)
  return Number(match[1]) / 1024
}

/**
 * Polls `url` every few milliseconds until it answers 200, and returns the milliseconds from
 * `startedAt` (a `performance.now()` taken just before the spawn). Fails if the process exits first.
 */
export const waitForReady = async (url: string, child: Subprocess, startedAt: number, timeoutMillis = 30_000): Promise<number> => {
  const pollMillis = 5
  while (performance.now() - startedAt < timeoutMillis) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the process exited (${child.exitCode ?? child.signalCode}) before ${url} answered 200`)
    }
    const status = await fetch(url).then(async (response) => {
      await response.arrayBuffer()
      return response.status
    }, () => null)
    if (status === 200) return performance.now() - startedAt
    await Bun.sleep(pollMillis)
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMillis} ms`)
}

export const tailOf = (path: string, lines = 20): string => {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch (error) {
    return `(cannot read ${path}: ${error instanceof Error ? error.message : String(error)})`
  }
}
