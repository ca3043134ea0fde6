/**
 * Real, separate Bulwark processes (`bun src/main.ts`), as an operator runs several instances: each
 * on port 0 (the chosen port is read from its "Listening on" log line), sharing one database, one
 * Redis (optional) and the same secrets from the environment. A process can be stopped (SIGTERM),
 * killed (-9) and started again; what it printed is kept, and a failure to start quotes its stderr.
 */
import type { Subprocess } from "bun"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { checkResponse } from "./contract.js"

const ROOT = resolve(import.meta.dir, "../..")
const LISTENING = /Listening on http:\/\/127\.0\.0\.1:(\d+)/

export interface Instance {
  readonly name: string
  readonly url: string
  readonly pid: number
  readonly fetch: (path: string, init?: RequestInit) => Promise<Response>
  /** What the process printed so far (stdout then stderr), for failure messages. */
  readonly output: () => string
  /** SIGTERM, then waits for the exit code. */
  readonly stop: () => Promise<number>
  /** SIGKILL: no finalizer runs, as when a machine or container dies. */
  readonly kill: () => Promise<void>
  readonly exited: Promise<number>
}

export interface ClusterOptions {
  /** `file:PATH` of a shared SQLite file (default: a new one), or a `postgres://` URL. */
  readonly databaseUrl?: string
  readonly redisUrl?: string
  /** Added to every instance's environment (e.g. `BULWARK_RATE_LIMIT`). */
  readonly env?: Record<string, string>
}

export interface Cluster {
  readonly databaseUrl: string
  readonly adminToken: string
  /** Starts one more instance on the shared database (and Redis) and waits until it is ready. */
  readonly start: (name: string, env?: Record<string, string>) => Promise<Instance>
  /** Creates a tenant through `instance`; returns its first API key. */
  readonly createTenant: (instance: Instance) => Promise<{ id: string; api_key: string; api_key_id: string }>
  readonly admin: (instance: Instance, path: string, init?: RequestInit) => Promise<Response>
  /** Stops every instance still running and removes the temporary files. */
  readonly close: () => Promise<void>
}

const collect = (stream: ReadableStream<Uint8Array>, into: { text: string }, onText: () => void) => {
  const decoder = new TextDecoder()
  void (async () => {
    for await (const chunk of stream) {
      into.text += decoder.decode(chunk, { stream: true })
      onText()
    }
  })()
}

const READY_WITHIN_MILLIS = 30_000

export const startCluster = (options: ClusterOptions = {}): Cluster => {
  const directory = mkdtempSync(join(tmpdir(), "bulwark-scale-"))
  const databaseUrl = options.databaseUrl ?? `file:${join(directory, "bulwark.db")}`
  // Every instance must share the secrets: a token issued by one is checked by another.
  const adminToken = randomBytes(24).toString("base64url")
  const jwtSecret = randomBytes(32).toString("base64url")
  const running = new Set<Subprocess>()

  const start = async (name: string, env: Record<string, string> = {}): Promise<Instance> => {
    const stdout = { text: "" }
    const stderr = { text: "" }
    const child = Bun.spawn(["bun", "src/main.ts"], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? directory,
        PORT: "0",
        HOST: "127.0.0.1",
        DATABASE_URL: databaseUrl,
        BULWARK_ADMIN_TOKEN: adminToken,
        BULWARK_JWT_SECRET: jwtSecret,
        BULWARK_RATE_LIMIT: "100000/60s",
        LOG_LEVEL: "info",
        LOG_FORMAT: "json",
        ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }),
        ...options.env,
        ...env
      },
      stdout: "pipe",
      stderr: "pipe"
    })
    running.add(child)
    const output = () => `--- ${name} (pid ${child.pid}) stdout\n${stdout.text.slice(-4000)}\n--- stderr\n${stderr.text.slice(-4000)}`
    const port = await new Promise<number>((resolvePort, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not log its port within ${READY_WITHIN_MILLIS} ms\n${output()}`)), READY_WITHIN_MILLIS)
      const look = () => {
        const match = LISTENING.exec(stdout.text)
        if (match !== null) {
          clearTimeout(timer)
          resolvePort(Number(match[1]))
        }
      }
      collect(child.stdout, stdout, look)
      collect(child.stderr, stderr, () => {})
      void child.exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`${name} exited with ${code} before listening\n${output()}`))
      })
    })
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + READY_WITHIN_MILLIS
    for (;;) {
      const ready = await fetch(`${url}/health/ready`).then((response) => response.status, () => 0)
      if (ready === 200) break
      if (Date.now() > deadline) throw new Error(`${name} was not ready within ${READY_WITHIN_MILLIS} ms (last: ${ready})\n${output()}`)
      await Bun.sleep(20)
    }
    const exited = child.exited.then((code) => {
      running.delete(child)
      return code
    })
    return {
      name,
      url,
      pid: child.pid,
      // Checked against /openapi.json like every response of the HTTP harness (test/support/contract.ts).
      fetch: (path, init) => fetch(url + path, init).then((response) => checkResponse(url, init?.method ?? "GET", path, response)),
      output,
      exited,
      stop: () => {
        child.kill("SIGTERM")
        return exited
      },
      kill: async () => {
        child.kill("SIGKILL")
        await exited
      }
    }
  }

  const admin = (instance: Instance, path: string, init: RequestInit = {}) =>
    instance.fetch(path, {
      ...init,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json", ...(init.headers ?? {}) }
    })

  const createTenant = async (instance: Instance) => {
    const response = await admin(instance, "/v1/admin/tenants", {
      method: "POST",
      body: JSON.stringify({ name: `tenant-${randomBytes(4).toString("hex")}` })
    })
    if (response.status !== 201) throw new Error(`creating a tenant answered ${response.status}: ${await response.text()}`)
    return (await response.json()) as { id: string; api_key: string; api_key_id: string }
  }

  const close = async () => {
    await Promise.all([...running].map((child) => {
      child.kill("SIGKILL")
      return child.exited
    }))
    rmSync(directory, { recursive: true, force: true })
  }

  return { databaseUrl, adminToken, start, createTenant, admin, close }
}
