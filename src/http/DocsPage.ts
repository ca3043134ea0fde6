/**
 * The documentation page (`GET /docs`): Swagger UI over the generated document, in the markup of
 * `@effect/platform`'s `HttpApiSwagger`, with the Swagger UI script and stylesheet that package
 * ships. Those are loaded from the installed package at the first request, not bundled into the
 * server: they were 1.9 MB of the 3.4 MB bundle, and loading them cost every start about 60 ms
 * (pinned to one core) for a page few clients ever ask for.
 */
import { HttpServerResponse, type OpenApi } from "@effect/platform"
import { Effect } from "effect"
import { dirname, join } from "node:path"

interface SwaggerAssets {
  readonly javascript: string
  readonly css: string
}

interface HtmlEscapes {
  readonly escape: (text: string) => string
  readonly escapeJson: (value: unknown) => string
}

/**
 * Where `HttpApiSwagger` is installed: seen from the running entry point (the checkout's packages),
 * else from this module's source directory (which a built server still names), for a build run
 * from a directory of its own.
 */
const installedSwagger = (): string => {
  try {
    return Bun.resolveSync("@effect/platform/HttpApiSwagger", dirname(Bun.main))
  } catch {
    return Bun.resolveSync("@effect/platform/HttpApiSwagger", import.meta.dir)
  }
}

/**
 * A module of the installed `@effect/platform` that sits beside its `HttpApiSwagger` and imports
 * nothing (so no second copy of any library is loaded); the package's exports do not name it, so it
 * is found by path.
 */
const platformInternal = async <A>(name: string): Promise<A> =>
  (await import(join(dirname(installedSwagger()), "internal", name))) as A

/** The page for `document`; a package without these modules is a defect (a 500, ledgered). */
export const render = (document: OpenApi.OpenAPISpec): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.promise(async () => {
    const [assets, html] = await Promise.all([platformInternal<SwaggerAssets>("httpApiSwagger.js"), platformInternal<HtmlEscapes>("html.js")])
    return HttpServerResponse.html(`<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>${html.escape(document.info.title)} Documentation</title>
  <style>${assets.css}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script id="swagger-spec" type="application/json">
    ${html.escapeJson(document)}
  </script>
  <script>
    ${assets.javascript}
    window.onload = () => {
      window.ui = SwaggerUIBundle({
        spec: JSON.parse(document.getElementById("swagger-spec").textContent),
        dom_id: '#swagger-ui',
      });
    };
  </script>
</body>
</html>`)
  })
