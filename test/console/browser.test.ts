/**
 * The console in a real browser (SPEC §12): sign in with a wrong and a right token, see a fresh
 * failure appear in its group, filter, open an error's deep link, resolve with notes, open and close
 * a breaker and see /health agree, sign out. Every step fails on a script error in the page, a
 * request to another origin, or a Content-Security-Policy violation; screenshots are saved under
 * test-artifacts/console/.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { launchChromium, requireChromium, screenshot, watchPage } from "../support/browser.js"
import { expectProblem, ledgerRecord, startServer, type TestServer, withKey } from "../support/server.js"

const TRACE_URL = "https://traces.example/trace/{trace_id}"
/** The console refreshes every 3 s (SPEC §12: at most 5 s); the ledger row is written off the request path within that. */
const APPEARS_WITHIN_MILLIS = 5_000

setDefaultTimeout(60_000)

const available = requireChromium()
const suite = available ? describe : describe.skip

suite("the console in Chromium", () => {
  let server: TestServer
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let problems: Array<string>
  let key: string

  beforeAll(async () => {
    server = await startServer({ traceUrl: TRACE_URL })
    key = (await server.createTenant()).api_key
    browser = await launchChromium()
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    page = await context.newPage()
    page.setDefaultTimeout(10_000)
    problems = await watchPage(page, server.url)
  })

  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  const expectClean = () => expect(problems).toEqual([])

  /** A 404 from the API as a client would meet it; its error_id. */
  const missingSession = async () =>
    (await expectProblem(await server.fetch(`/v1/sessions/${crypto.randomUUID()}`, withKey(key)), 404, "SESSION_NOT_FOUND")).error_id

  const groupRow = (code: string) => page.locator(`tr[data-code="${code}"]`)

  test("serves the page with its security headers", async () => {
    const response = await page.goto(`${server.url}/console`)
    const headers = response!.headers()
    expect(headers["content-security-policy"]).toContain("default-src 'none'")
    expect(headers["content-security-policy"]).toContain("script-src 'self'")
    expect(headers["content-security-policy"]).toContain("frame-ancestors 'none'")
    expect(headers["x-content-type-options"]).toBe("nosniff")
    expect(headers["x-frame-options"]).toBe("DENY")
    await page.getByLabel("Admin token").waitFor()
    expectClean()
  })

  test("a wrong token is refused with its code and error_id, and the field is emptied", async () => {
    await page.getByLabel("Admin token").fill("a-wrong-token-that-is-long-enough-to-look-real")
    await page.keyboard.press("Enter")
    const alert = page.getByRole("alert")
    await alert.waitFor()
    expect(await alert.textContent()).toMatch(/AUTH_INVALID: .*\(error_id [0-9a-f-]{36}\)/)
    expect(await page.getByLabel("Admin token").inputValue()).toBe("")
    await screenshot(page, "01-sign-in-refused")
    expectClean()
  })

  test("the right token, typed and sent with the keyboard, signs in; it is nowhere in the page, the URL or storage", async () => {
    const field = page.getByLabel("Admin token")
    await field.focus()
    await page.keyboard.type(server.adminToken)
    await page.keyboard.press("Enter")
    await page.getByRole("heading", { name: "Error groups" }).waitFor()
    expect(page.url()).not.toContain(server.adminToken)
    expect(await page.content()).not.toContain(server.adminToken)
    const storage = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    expect(storage).toEqual([0, 0, ""])
    const [cookie] = await context.cookies()
    expect(cookie).toMatchObject({ name: "bulwark_console", httpOnly: true, sameSite: "Strict" })
    expect(cookie!.value).not.toContain(server.adminToken)
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000 + 7 * 3600)
    expectClean()
  })

  test("a fresh failure appears in its group within 5 s, and the count follows", async () => {
    await missingSession()
    const row = groupRow("SESSION_NOT_FOUND")
    await row.waitFor({ timeout: APPEARS_WITHIN_MILLIS })
    const before = Number((await row.locator(".count").textContent())?.replace(/\D/g, ""))
    await missingSession()
    await page.waitForFunction(
      ([selector, count]) => Number((globalThis as any).document.querySelector(selector)?.textContent.replace(/\D/g, "")) === count,
      [`tr[data-code="SESSION_NOT_FOUND"] .count`, before + 1] as const,
      { timeout: APPEARS_WITHIN_MILLIS }
    )
    expect(await row.textContent()).toContain("/v1/sessions/:id")
    expect(await row.textContent()).toContain("new")
    await screenshot(page, "02-groups")
    expectClean()
  })

  test("filters by code", async () => {
    await expectProblem(await server.fetch("/v1/sessions?limit=0", withKey(key)), 400, "VALIDATION_FAILED")
    await groupRow("VALIDATION_FAILED").waitFor({ timeout: APPEARS_WITHIN_MILLIS })
    await page.getByLabel("Code").fill("VALIDATION_FAILED")
    await page.getByLabel("Code").press("Enter")
    await groupRow("SESSION_NOT_FOUND").waitFor({ state: "detached" })
    expect(await page.locator("tr[data-code]").count()).toBe(1)
    await page.getByLabel("Type").selectOption("auth")
    await page.getByText("No errors match.").waitFor()
    await page.getByRole("button", { name: "Clear" }).click()
    await groupRow("SESSION_NOT_FOUND").waitFor()
    expectClean()
  })

  test("an error_id from a client's problem body opens its whole record: sanitised payload, stack, trace link", async () => {
    const response = await server.fetch(
      "/v1/sessions",
      withKey(key, { method: "POST", body: JSON.stringify({ title: 42, metadata: { password: "hunter2" } }) })
    )
    const { error_id } = await expectProblem(response, 400, "VALIDATION_FAILED")
    const record = await ledgerRecord(server, error_id)
    await page.getByLabel("Error id").fill(`urn:uuid:${error_id}`)
    await page.getByLabel("Error id").press("Enter")
    await page.getByRole("heading", { name: `Error ${error_id}` }).waitFor()
    expect(page.url()).toBe(`${server.url}/console/errors/${error_id}`)
    // The same record on a fresh load of the deep link, as support staff would paste it.
    await page.goto(`${server.url}/console/errors/${error_id}`)
    await page.getByRole("heading", { name: `Error ${error_id}` }).waitFor()
    expect(await page.locator(".code").textContent()).toBe("VALIDATION_FAILED")
    const payload = await page.locator("pre.payload").textContent()
    expect(payload).toContain("[Filtered]")
    expect(payload).not.toContain("hunter2")
    expect(await page.locator("pre.stack").isVisible()).toBe(true)
    expect(await page.locator("a.trace-link").getAttribute("href")).toBe(TRACE_URL.replace("{trace_id}", record.trace_id!))
    await screenshot(page, "03-error")
    expectClean()
  })

  test("resolves the error with notes", async () => {
    const errorId = page.url().split("/").at(-1)!
    await page.getByLabel("Notes").fill("clients sent a number as the title; told them")
    await page.getByRole("button", { name: "Resolve this error" }).click()
    await page.locator(".summary .badge.resolved").waitFor()
    const record = await ledgerRecord(server, errorId)
    expect(record).toMatchObject({ resolved: true, notes: "clients sent a number as the title; told them" })
    expect(await page.locator("dl.record").textContent()).toContain("clients sent a number as the title")
    expectClean()
  })

  test("resolves a group with notes after confirming, and it leaves the unresolved view", async () => {
    await page.getByRole("link", { name: "← All error groups" }).click()
    const row = groupRow("SESSION_NOT_FOUND")
    await row.getByRole("button", { name: "Resolve…" }).click()
    const dialog = page.getByRole("dialog")
    await dialog.getByLabel("Notes").fill("polling deleted sessions")
    await dialog.getByRole("button", { name: "Resolve group" }).click()
    await row.waitFor({ state: "detached" })
    const groups = (await (await server.admin("/v1/admin/errors/groups?code=SESSION_NOT_FOUND")).json()) as { data: Array<{ unresolved_count: number }> }
    expect(groups.data[0]?.unresolved_count).toBe(0)
    expectClean()
  })

  const breakerOf = async (dependency: string) => {
    const health = (await (await server.admin("/health")).json()) as { status: string; dependencies: Record<string, { breaker: string }> }
    return { status: health.status, breaker: health.dependencies[dependency]!.breaker }
  }

  test("opens the cache breaker after confirming, and /health agrees; cancelling changes nothing; closing it again", async () => {
    const cache = page.locator('li[data-dependency="cache"]')
    await cache.getByRole("button", { name: "Open the cache breaker" }).click()
    await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click()
    await page.getByRole("dialog").waitFor({ state: "detached" })
    expect((await breakerOf("cache")).breaker).toBe("closed")

    // By keyboard: Enter on the button opens the dialog with the focus inside it, Escape leaves it.
    await cache.getByRole("button", { name: "Open the cache breaker" }).focus()
    await page.keyboard.press("Enter")
    await page.getByRole("dialog").waitFor()
    expect(await page.evaluate("document.activeElement.closest('dialog') !== null")).toBe(true)
    await page.keyboard.press("Escape")
    await page.getByRole("dialog").waitFor({ state: "detached" })
    expect((await breakerOf("cache")).breaker).toBe("closed")

    await cache.getByRole("button", { name: "Open the cache breaker" }).click()
    await page.getByRole("dialog").getByRole("button", { name: "Open breaker" }).click()
    await cache.locator(".breaker", { hasText: "forced_open" }).waitFor()
    expect(await breakerOf("cache")).toEqual({ status: "degraded", breaker: "forced_open" })
    await screenshot(page, "04-breaker-open")

    await cache.getByRole("button", { name: "Close the cache breaker" }).click()
    await page.getByRole("dialog").getByRole("button", { name: "Close breaker" }).click()
    await cache.locator(".breaker", { hasText: /^closed$/ }).waitFor()
    expect(await breakerOf("cache")).toEqual({ status: "ok", breaker: "closed" })
    expectClean()
  })

  test("shows the request and error rates of the last hour", async () => {
    const caption = await page.locator(".rates figcaption").textContent()
    const [requests, errors] = [...caption!.matchAll(/(\d+) in the hour/g)].map((match) => Number(match[1]))
    expect(requests).toBeGreaterThan(0)
    expect(errors).toBeGreaterThanOrEqual(4)
    expect(await page.locator(".rates polyline.errors").getAttribute("points")).toMatch(/^[\d.,\s]+$/)
    await screenshot(page, "05-overview-1280x800")
    expectClean()
  })

  test("is readable on a narrow window: nothing wider than the screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 })
    await page.getByRole("heading", { name: "Error groups" }).waitFor()
    const [scrollWidth, clientWidth] = (await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")) as Array<number>
    const wide = await page.evaluate(
      `[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 5).map((e) => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`
    )
    expect(wide).toEqual([])
    expect(scrollWidth).toBeLessThanOrEqual(clientWidth! + 1)
    await screenshot(page, "06-narrow")
    await page.setViewportSize({ width: 1280, height: 800 })
    expectClean()
  })

  test("signing out ends the session on the server", async () => {
    const [cookie] = await context.cookies()
    await page.getByRole("button", { name: "Sign out" }).click()
    await page.getByLabel("Admin token").waitFor()
    expect(await context.cookies()).toEqual([])
    const replayed = await server.fetch("/v1/admin/errors", { headers: { cookie: `${cookie!.name}=${cookie!.value}` } })
    await expectProblem(replayed, 401, "AUTH_INVALID")
    await page.reload()
    await page.getByLabel("Admin token").waitFor()
    expectClean()
  })

  test("cannot be framed", async () => {
    const framer = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => new Response(`<iframe src="${server.url}/console"></iframe>`, { headers: { "content-type": "text/html" } })
    })
    try {
      const other = await context.newPage()
      await other.goto(`http://127.0.0.1:${framer.port}/`, { waitUntil: "load" })
      // Chromium replaces a frame it refuses to show with its own error page.
      const frames = other.frames().filter((frame) => frame !== other.mainFrame())
      expect(frames.map((frame) => frame.url())).toEqual(["chrome-error://chromewebdata/"])
      await other.close()
    } finally {
      framer.stop(true)
    }
  })
})
