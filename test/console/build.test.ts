/**
 * The console as `bun start` serves it: `bun run build` bundles the page with the server, and the
 * built server answers the page and its files from its own directory, with the console's headers;
 * and the documentation page, whose Swagger UI is not in the bundle.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test"
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import packageJson from "../../package.json"

setDefaultTimeout(60_000)

const root = join(import.meta.dir, "..", "..")
const directory = mkdtempSync(join(tmpdir(), "bulwark-console-build-"))
let server: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined
let url = ""

beforeAll(async () => {
  // The project's own build command, writing into a directory of the test's own.
  const command = packageJson.scripts.build.replace(/^bun /, "").replace("--outdir=dist", `--outdir=${join(directory, "dist")}`).split(" ")
  const build = Bun.spawn(["bun", ...command], { cwd: root, stdout: "pipe", stderr: "pipe" })
  if ((await build.exited) !== 0) throw new Error(`the build failed: ${await new Response(build.stderr).text()}`)
  server = Bun.spawn(["bun", join(directory, "dist", "main.js")], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", DATABASE_URL: `file:${join(directory, "data", "bulwark.db")}` },
    stdout: "pipe",
    stderr: "pipe"
  })
  const reader = server.stdout.getReader()
  let output = ""
  while (url === "") {
    const { done, value } = await reader.read()
    if (done) throw new Error(`the built server stopped: ${output}${await new Response(server.stderr).text()}`)
    output += new TextDecoder().decode(value)
    url = /Listening on (http:\/\/[0-9.:]+)/.exec(output)?.[1] ?? ""
  }
  reader.releaseLock()
})

afterAll(async () => {
  server?.kill()
  await server?.exited
  rmSync(directory, { recursive: true, force: true })
})

test("the built server answers /console, any path below it, and the page's files, with the console's headers", async () => {
  for (const path of ["/console", "/console/errors/0193a7c4-8e8f-7b3a-9c1d-2e4f5a6b7c8d"]) {
    const response = await fetch(url + path)
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toStartWith("text/html")
    expect(response.headers.get("content-security-policy")).toContain("script-src 'self'")
    expect(response.headers.get("x-frame-options")).toBe("DENY")
    const html = await response.text()
    const files = [...html.matchAll(/(?:src|href)="(\/console\/[^"]+)"/g)].map((match) => match[1]!)
    expect(files.some((file) => file.endsWith(".js"))).toBe(true)
    expect(files.some((file) => file.endsWith(".css"))).toBe(true)
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    for (const file of files) {
      const asset = await fetch(url + file)
      expect(asset.status).toBe(200)
      expect(asset.headers.get("x-content-type-options")).toBe("nosniff")
      const expectedType = { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ }[file.split(".").at(-1)!]
      expect(asset.headers.get("content-type")).toMatch(expectedType ?? /^$/)
      expect((await asset.text()).length).toBeGreaterThan(100)
    }
  }
})

test("the built server answers /docs: the documentation page, with Swagger UI loaded at its first request", async () => {
  const response = await fetch(url + "/docs")
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toStartWith("text/html")
  const page = await response.text()
  expect(page).toContain("SwaggerUIBundle({")
  expect(page).toContain('<script id="swagger-spec" type="application/json">')
})

test("a build missing one of the console's files does not start, and names the file: the files are read at start", async () => {
  const copy = join(directory, "incomplete")
  cpSync(join(directory, "dist"), copy, { recursive: true })
  const stylesheet = readdirSync(copy).find((name) => name.endsWith(".css"))
  expect(stylesheet).toBeDefined()
  rmSync(join(copy, stylesheet!))
  const started = Bun.spawn(["bun", join(copy, "main.js")], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", DATABASE_URL: `file:${join(directory, "incomplete.db")}` },
    stdout: "pipe",
    stderr: "pipe"
  })
  expect(await started.exited).not.toBe(0)
  const stderr = await new Response(started.stderr).text()
  expect(stderr).toContain("cannot read the console bundle (")
  expect(stderr).toContain(stylesheet!)
  expect(await new Response(started.stdout).text()).not.toContain("Listening on")
})
