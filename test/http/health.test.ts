/** Health probes, the OpenAPI document and the docs page. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import { expectProblem, startServer, type TestServer } from "../support/server.js"
import { sqliteOnly } from "../support/postgres.js"

let server: TestServer

beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.close())

describe("health", () => {
  test("/health/live and /health/ready answer ok", async () => {
    for (const path of ["/health/live", "/health/ready"]) {
      const response = await server.fetch(path)
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ status: "ok" })
    }
  })

  sqliteOnly("renames a table through a second SQLite connection")("/health/ready is 503 DATABASE_UNAVAILABLE while the database cannot serve, 200 again after", async () => {
    const broken = await startServer()
    const other = new Database(broken.databaseFile)
    try {
      // Another connection takes the schema away underneath the running server.
      other.run("PRAGMA foreign_keys = OFF")
      other.run("ALTER TABLE tenants RENAME TO tenants_away")
      await expectProblem(await broken.fetch("/health/ready"), 503, "DATABASE_UNAVAILABLE")
      expect((await broken.fetch("/health/live")).status).toBe(200)
      other.run("ALTER TABLE tenants_away RENAME TO tenants")
      expect((await broken.fetch("/health/ready")).status).toBe(200)
    } finally {
      other.close()
      await broken.close()
    }
  })
})

describe("OpenAPI", () => {
  test("/openapi.json lists every route with its problem responses", async () => {
    const response = await server.fetch("/openapi.json")
    expect(response.status).toBe(200)
    const spec = (await response.json()) as {
      openapi: string
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>
    }
    expect(spec.openapi).toStartWith("3.1")
    const expected: Record<string, Record<string, Array<string>>> = {
      "/v1/sessions": { post: ["201", "400", "401", "409", "413", "415", "500", "503"], get: ["200", "400", "401", "500", "503"] },
      "/v1/sessions/{id}": { get: ["200", "400", "401", "404", "500", "503"], delete: ["204", "400", "401", "404", "500", "503"] },
      "/v1/admin/tenants": { post: ["201", "400", "401", "403", "409", "500", "503"] },
      "/v1/admin/tenants/{id}/keys": { post: ["201", "400", "401", "403", "404", "500", "503"] },
      "/v1/admin/keys/{id}": { delete: ["204", "400", "401", "403", "404", "500", "503"] },
      "/health/live": { get: ["200"] },
      "/health/ready": { get: ["200", "503"] },
      "/problems/{slug}": { get: ["200", "404"] }
    }
    for (const [path, methods] of Object.entries(expected)) {
      for (const [method, statuses] of Object.entries(methods)) {
        const operation = spec.paths[path]?.[method]
        expect(operation, `${method} ${path}`).toBeDefined()
        for (const status of statuses) {
          expect(operation!.responses[status], `${method} ${path} ${status}`).toBeDefined()
          if (Number(status) >= 400) {
            expect(Object.keys(operation!.responses[status]!.content ?? {})).toEqual(["application/problem+json"])
          }
        }
      }
    }
  })

  test("/docs serves the documentation page: Swagger UI over the same document as /openapi.json", async () => {
    const response = await server.fetch("/docs")
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("text/html")
    const page = await response.text()
    // Swagger UI's own script and stylesheet are in the page, not merely named by it.
    expect(page).toContain("SwaggerUIBundle({")
    const style = page.slice(page.indexOf("<style>"), page.indexOf("</style>"))
    expect(style).toContain(".swagger-ui")
    expect(style.length).toBeGreaterThan(10_000)
    const embedded = /<script id="swagger-spec" type="application\/json">([^<]*)<\/script>/.exec(page)?.[1]
    expect(embedded).toBeDefined()
    const document = (await (await server.fetch("/openapi.json")).json()) as { readonly info: { readonly title: string } }
    expect(JSON.parse(embedded!)).toEqual(document)
    expect(page).toContain(`<title>${document.info.title} Documentation</title>`)
    // Made once: a second request answers the same page.
    expect(await (await server.fetch("/docs")).text()).toBe(page)
  })
})
