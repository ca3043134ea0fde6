/**
 * The contract check every HTTP test runs: each response the test harness receives is validated
 * against the server's own `/openapi.json` with a JSON Schema 2020-12 validator (ajv, with formats).
 * The status must be documented for the operation, the media type and the body must match the
 * documented schema, every header the document marks required must be there, and every header of
 * the edge's (request id, trace id, retry, rate limits, authentication, caching, `Allow`) must be
 * documented on that response and match its schema. A mismatch throws, which fails the test that
 * made the request. Event streams are checked by status and headers only.
 */
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js"
import addFormats from "ajv-formats"
import { OpenApi } from "@effect/platform"
import { Api } from "../../src/Api.js"
import { routeTemplates } from "../../src/telemetry/ServerSpan.js"

type Json = Record<string, any>

/** The headers the edge sends; each must be documented wherever it is sent. */
const EDGE_HEADERS = [
  "x-request-id",
  "x-trace-id",
  "retry-after",
  "www-authenticate",
  "allow",
  "ratelimit-limit",
  "ratelimit-remaining",
  "ratelimit-reset",
  "cache-control",
  "set-cookie"
] as const

const routeOf = routeTemplates(Api)
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const

/** `/v1/sessions/:id` → `/v1/sessions/{id}`, the document's spelling of a route. */
const documentPath = (template: string): string => template.replaceAll(/:([A-Za-z_]+)/g, "{$1}")

const pointerSegment = (segment: string): string => segment.replaceAll("~", "~0").replaceAll("/", "~1")

export class ContractViolation extends Error {
  override readonly name = "ContractViolation"
}

interface Contract {
  readonly document: Json
  readonly validator: (pointer: ReadonlyArray<string>) => ValidateFunction
}

const DOCUMENT_ID = "bulwark-openapi"

const compile = (document: Json): Contract => {
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  addFormats(ajv)
  ajv.addSchema(document, DOCUMENT_ID)
  const compiled = new Map<string, ValidateFunction>()
  return {
    document,
    validator: (pointer) => {
      const ref = `${DOCUMENT_ID}#/${pointer.map(pointerSegment).join("/")}`
      let validate = compiled.get(ref)
      if (validate === undefined) {
        validate = ajv.compile({ $ref: ref })
        compiled.set(ref, validate)
      }
      return validate
    }
  }
}

/**
 * The document is the same for every server of this code: built from `Api` exactly as the server
 * builds `/openapi.json`, compiled once per process. Not fetched: a server that refuses requests
 * (its required cache down at start) must still have its refusals checked.
 */
let contract: Promise<Contract> | undefined

export const contractOf = (_baseUrl: string): Promise<Contract> => {
  contract ??= Promise.resolve(compile(OpenApi.fromApi(Api) as unknown as Json))
  return contract
}

const describeErrors = (validate: ValidateFunction): string =>
  (validate.errors ?? []).map((error) => `${error.instancePath || "/"} ${error.message ?? ""}`.trim()).join("; ")

const mediaTypeOf = (response: Response): string => (response.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase()

/**
 * Checks one response against the document and returns it unread (a clone is read). Paths the
 * document does not describe (`/docs`, the tests' own routes, unknown paths) must still answer
 * failures as problems with the edge's headers.
 */
export const checkResponse = async (baseUrl: string, method: string, url: string, response: Response): Promise<Response> => {
  const { document, validator } = await contractOf(baseUrl)
  const target = new URL(url, baseUrl)
  const path = target.pathname + target.search
  const upper = method.toUpperCase()
  const where = `${upper} ${target.pathname} → ${response.status}`
  const fail = (message: string): never => {
    throw new ContractViolation(`contract: ${where}: ${message}`)
  }

  // The operation answering, or for a method the path does not take, the path's first operation
  // (whose 405 response documents that answer).
  const ownTemplate = routeOf(upper, path)
  const otherMethod = ownTemplate === undefined ? METHODS.find((candidate) => routeOf(candidate, path) !== undefined) : undefined
  const template = ownTemplate ?? (otherMethod === undefined ? undefined : routeOf(otherMethod, path))
  const methodKey = (ownTemplate === undefined ? otherMethod : upper === "HEAD" ? "GET" : upper)?.toLowerCase()
  const operationPath = template === undefined ? undefined : documentPath(template)
  const operation: Json | undefined = operationPath === undefined ? undefined : document.paths[operationPath]?.[methodKey!]
  const status = String(response.status)
  const mediaType = mediaTypeOf(response)

  if (operation === undefined) {
    // A path the document does not describe (`/docs`, `/mcp`, the tests' own routes, unknown
    // paths): every response still has a request id (SPEC §2), and a problem is the documented one.
    if (!response.headers.has("x-request-id")) fail("header x-request-id is missing")
    // A HEAD answer has the headers of a problem but no body.
    if (mediaType !== "application/problem+json" || upper === "HEAD") return response
    const text = await response.clone().text()
    const validate = validator(["components", "schemas", "Problem"])
    if (!validate(JSON.parse(text))) fail(`problem body: ${describeErrors(validate)}: ${text.slice(0, 500)}`)
    return response
  }

  const responsePointer = ["paths", operationPath!, methodKey!, "responses", status]
  const documented: Json | undefined = operation.responses?.[status]
  if (documented === undefined) return fail(`status ${status} is not documented for ${methodKey!.toUpperCase()} ${operationPath}`)

  // Headers: required ones present, the edge's ones documented on this response and well-formed.
  const headers: Json = documented.headers ?? {}
  for (const [name, spec] of Object.entries(headers)) {
    const componentName = spec.$ref === undefined ? undefined : String(spec.$ref).split("/").pop()!
    const resolved: Json = componentName === undefined ? spec : document.components.headers[componentName]
    const value = response.headers.get(name)
    if (value === null) {
      if (resolved.required === true) fail(`required header ${name} is missing`)
      continue
    }
    const validate = componentName === undefined
      ? validator([...responsePointer, "headers", name, "schema"])
      : validator(["components", "headers", componentName, "schema"])
    if (!validate(value)) fail(`header ${name}: ${JSON.stringify(value)} ${describeErrors(validate)}`)
  }
  const documentedNames = new Set(Object.keys(headers).map((name) => name.toLowerCase()))
  for (const name of EDGE_HEADERS) {
    if (response.headers.has(name) && !documentedNames.has(name)) fail(`header ${name} is sent but not documented on this response`)
  }

  if (mediaType === "text/event-stream" || upper === "HEAD") return response
  const text = await response.clone().text()
  const content: Json | undefined = documented.content
  if (content === undefined) {
    if (text.length > 0) fail(`no body is documented, but one was sent: ${text.slice(0, 200)}`)
    return response
  }
  // A documented media type may carry parameters (`text/plain; version=0.0.4`); the essence must match.
  const documentedType = Object.keys(content).find((key) => key.split(";")[0]!.trim().toLowerCase() === mediaType)
  if (documentedType === undefined) return fail(`media type ${mediaType || "(none)"} is not documented (${Object.keys(content).join(", ")})`)
  if (content[documentedType].schema === undefined) return response
  let body: unknown = text
  if (mediaType === "application/json" || mediaType.endsWith("+json")) {
    try {
      body = JSON.parse(text)
    } catch {
      fail(`body is not JSON: ${text.slice(0, 200)}`)
    }
  }
  const validate = validator([...responsePointer, "content", documentedType, "schema"])
  if (!validate(body)) fail(`body: ${describeErrors(validate)}: ${text.slice(0, 500)}`)
  return response
}
