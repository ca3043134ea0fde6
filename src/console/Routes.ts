/**
 * The operators' console (SPEC §12) as Bun routes: `/console` and every path below it answer the
 * page (it routes in the browser, so `/console/errors/{error_id}` is a link support staff can paste),
 * and its bundled script and stylesheet are served beside it, all from this process.
 *
 * The page is an HTML import bundled by Bun. Bun serves an HTML import passed to `routes` itself,
 * with no way to add headers, and the console's responses must carry its security headers; so the
 * bundle's files are served here: those `bun run build` made ahead of time when running the build,
 * else (running from source: development and tests) a bundle made once with `Bun.build`.
 */
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { basename, dirname, resolve } from "node:path"
import { StartupError } from "../Config.js"
import consolePage from "./index.html"

/** Nothing but the server's own origin, no inline script or style, no framing (SPEC §12). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join("; ")

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
} as const

/** A file of the console's bundle, read whole: the routes serve what was there at start. */
interface BundleFile {
  readonly name: string
  readonly contentType: string
  readonly body: Uint8Array
}

const isHtml = (contentType: string) => contentType.startsWith("text/html")

/**
 * Read synchronously: a few tens of kilobytes from the page cache. Read through promises (one
 * `arrayBuffer()` per file), the same files cost the start 17-24 ms pinned to one core, waiting on
 * Bun's I/O threads and the turns of the event loop that brought the answers back.
 */
const builtAhead = (files: NonNullable<Bun.HTMLBundle["files"]>): ReadonlyArray<BundleFile> =>
  files.map((file) => ({
    name: basename(file.path),
    contentType: file.headers["content-type"],
    // Paths are relative to the built server's own directory: the entry point's (the build is a
    // CommonJS byte-code bundle, where `import.meta.dir` would still name the source directory).
    body: readFileSync(resolve(dirname(Bun.main), file.path))
  }))

const buildNow = async (index: string): Promise<ReadonlyArray<BundleFile>> => {
  const built = await Bun.build({ entrypoints: [index], target: "browser", minify: true })
  if (!built.success) throw new Error(built.logs.map(String).join("\n"))
  return Promise.all(
    built.outputs.map(async (output) => ({ name: basename(output.path), contentType: output.type, body: new Uint8Array(await output.arrayBuffer()) }))
  )
}

/** Built once per process when running from source: the sources do not change while it runs. */
let bundled: Promise<ReadonlyArray<BundleFile>> | undefined

const bundleFiles = Effect.tryPromise({
  try: () => {
    if (consolePage.files !== undefined) return Promise.resolve(builtAhead(consolePage.files))
    bundled ??= buildNow(consolePage.index)
    return bundled
  },
  catch: (error) => new StartupError("console", `cannot read the console bundle (${error instanceof Error ? error.message : String(error)})`)
})

const respond = (file: BundleFile, body: Uint8Array): (request: Request) => Response => {
  const headers = {
    ...SECURITY_HEADERS,
    "content-type": file.contentType,
    // The page names its files by content hash: the page is always asked again, the files never.
    "cache-control": isHtml(file.contentType) ? "no-cache" : "public, max-age=31536000, immutable"
  }
  // SPEC §2: every response carries `X-Request-Id`, the client's when it is a sane token.
  return (request) => {
    const given = request.headers.get("x-request-id")
    return new Response(body, { headers: { ...headers, "x-request-id": given !== null && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID() } })
  }
}

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * The bundler refers to the page's files relative to where it wrote the page (`./x.js` from source,
 * `../x.js` in the build); the page answers at every depth under `/console`, so they are made absolute.
 */
const withAbsoluteReferences = (html: string, names: ReadonlyArray<string>): string =>
  names.reduce((text, name) => text.replaceAll(new RegExp(`(src|href)="(?:\\.{1,2}/)*${name.replaceAll(".", "\\.")}"`, "g"), `$1="/console/${name}"`), html)

export type Routes = Record<string, { GET: (request: Request) => Response }>

/** `GET` routes for Bun.serve: the page at `/console` and below, each bundled file at `/console/{name}`. */
export const make: Effect.Effect<Routes, StartupError> = Effect.gen(function*() {
  const files = yield* bundleFiles
  const page = files.findIndex((file) => isHtml(file.contentType))
  if (page === -1) return yield* Effect.fail(new StartupError("console", "the console bundle has no page"))
  const pageBody = new TextEncoder().encode(withAbsoluteReferences(new TextDecoder().decode(files[page]!.body), files.map((file) => file.name)))
  const routes: Routes = {}
  files.forEach((file, i) => {
    if (i !== page) routes[`/console/${file.name}`] = { GET: respond(file, file.body) }
  })
  const pageRoute = { GET: respond(files[page]!, pageBody) }
  routes["/console"] = pageRoute
  routes["/console/*"] = pageRoute
  return routes
})
