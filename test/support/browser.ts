/**
 * Debian's Chromium driven by playwright-core, for the console's browser tests. Without the browser
 * the caller skips with a printed reason, except under `CI=true`, where that is a failure.
 */
import { type Browser, chromium, type Page } from "playwright-core"
import { mkdirSync } from "node:fs"
import { join } from "node:path"

export const chromiumPath = Bun.which("chromium") ?? Bun.which("chromium-browser")

export const requireChromium = (): boolean => {
  if (chromiumPath !== null) return true
  if (process.env.CI === "true") throw new Error("chromium is not installed, and CI must not skip the console's browser tests")
  console.warn("skipping the console's browser tests: chromium is not installed (apt-get install -y chromium)")
  return false
}

/** The flags Chromium needs headless in a container with no network of its own to call. */
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: chromiumPath!, args: FLAGS, headless: true })

export const ARTIFACTS = join(import.meta.dir, "..", "..", "test-artifacts", "console")

export const screenshot = async (page: Page, name: string): Promise<string> => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const path = join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}

/**
 * What a page must never do, collected as it happens: a script error, a request to another
 * origin, a Content-Security-Policy violation (reported by the page's own event and the console).
 */
export const watchPage = async (page: Page, origin: string): Promise<Array<string>> => {
  const problems: Array<string> = []
  page.on("pageerror", (error) => problems.push(`script error: ${error.message}`))
  page.on("request", (request) => {
    const url = request.url()
    if (new URL(url).origin !== origin) problems.push(`request to another origin: ${url}`)
  })
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`)
  })
  await page.exposeFunction("__reportViolation", (text: string) => problems.push(`CSP violation: ${text}`))
  // Injected by the browser's debugging protocol, so the page's own policy does not apply to it.
  await page.addInitScript({
    content: `document.addEventListener("securitypolicyviolation", (e) => window.__reportViolation(e.violatedDirective + " " + e.blockedURI))`
  })
  return problems
}
