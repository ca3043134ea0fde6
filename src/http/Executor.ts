/**
 * The one request pipeline (SPEC §9). Routes, schemas, errors and docs are declared once, in the
 * `HttpApi` (`src/Api.ts`); handlers are declared per group with `group` (the same contract as
 * `HttpApiBuilder.group`). At start, each endpoint is compiled into plain steps: its route in one
 * router, its path, query, header and body decoders, its authentication, its success encoder. Each
 * request then runs in one fiber, started with the request and its server span already in its
 * context, under the same boundary (request id, body rules, rate limits, deadline, problem
 * rendering and the ledger) whatever the route, and is answered synchronously when nothing in it
 * waits.
 */
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiError,
  type HttpApiEndpoint,
  type HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  OpenApi
} from "@effect/platform"
import type { Server } from "bun"
import { Chunk, Context, Effect, Either, Exit, Layer, Option, Runtime, Schema, SchemaAST, type Scope, Tracer } from "effect"
import { pipeArguments } from "effect/Pipeable"
import * as FindMyWay from "find-my-way-ts"
import { CarriesSecret } from "../Api.js"
import { FieldIssue, NotFound, ValidationFailed } from "../errors.js"
import { plainServerSpan, ROUTER_CONFIG, type RouteLookup } from "../telemetry/ServerSpan.js"
import * as DocsPage from "./DocsPage.js"
import { problemBoundary, type RequestBody, restoredDeadline, deadlineFiberId } from "./Boundary.js"
import { trackPeer } from "./RateLimit.js"

/** A group's handlers as `group` leaves them for the executor: each endpoint's handler and the context it was built in. */
export interface GroupHandlers {
  readonly items: ReadonlyArray<HttpApiBuilder.Handlers.Item<any, any>>
  readonly context: Context.Context<never>
}

const groupTag = <ApiId extends string, Name extends string>(apiId: ApiId, name: Name) =>
  Context.GenericTag<HttpApiGroup.ApiGroup<ApiId, Name>, GroupHandlers>(`bulwark/Executor/${apiId}/${name}`)

/** The handlers' builder, as `HttpApiBuilder` makes it (whose own is not exported). */
const HandlersProto = {
  [HttpApiBuilder.HandlersTypeId]: { _Endpoints: (_: never) => _ },
  pipe() {
    return pipeArguments(this, arguments)
  },
  handle(this: HandlersState, name: string, handler: any, options?: { readonly uninterruptible?: boolean | undefined }) {
    return add(this, name, handler, false, options)
  },
  handleRaw(this: HandlersState, name: string, handler: any, options?: { readonly uninterruptible?: boolean | undefined }) {
    return add(this, name, handler, true, options)
  }
}

interface HandlersState {
  readonly group: HttpApiGroup.HttpApiGroup.AnyWithProps
  readonly handlers: Chunk.Chunk<HttpApiBuilder.Handlers.Item<any, any>>
}

const makeHandlers = (state: HandlersState): HandlersState => Object.assign(Object.create(HandlersProto), state)

const add = (
  self: HandlersState,
  name: string,
  handler: any,
  withFullRequest: boolean,
  options?: { readonly uninterruptible?: boolean | undefined }
) =>
  makeHandlers({
    group: self.group,
    handlers: Chunk.append(self.handlers, {
      endpoint: self.group.endpoints[name]!,
      handler,
      withFullRequest,
      uninterruptible: options?.uninterruptible ?? false
    })
  })

/**
 * The handlers of one group of the API: the same contract and types as `HttpApiBuilder.group`,
 * but the handlers are kept as a service for the executor instead of being routed by `HttpRouter`.
 */
export const group = <
  ApiId extends string,
  Groups extends HttpApiGroup.HttpApiGroup.Any,
  ApiError,
  ApiR,
  const Name extends HttpApiGroup.HttpApiGroup.Name<Groups>,
  Return
>(
  api: HttpApi.HttpApi<ApiId, Groups, ApiError, ApiR>,
  groupName: Name,
  build: (
    handlers: HttpApiBuilder.Handlers.FromGroup<ApiError, ApiR, HttpApiGroup.HttpApiGroup.WithName<Groups, Name>>
  ) => HttpApiBuilder.Handlers.ValidateReturn<Return>
): Layer.Layer<
  HttpApiGroup.ApiGroup<ApiId, Name>,
  HttpApiBuilder.Handlers.Error<Return>,
  Exclude<HttpApiBuilder.Handlers.Context<Return> | HttpApiGroup.HttpApiGroup.MiddlewareWithName<Groups, Name>, Scope.Scope>
> =>
  Layer.effect(
    groupTag(api.identifier, groupName),
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const apiGroup = (api.groups as unknown as Record<string, HttpApiGroup.HttpApiGroup.AnyWithProps>)[groupName]!
      const result = build(makeHandlers({ group: apiGroup, handlers: Chunk.empty() }) as any) as unknown
      const handlers = (Effect.isEffect(result) ? yield* (result as Effect.Effect<HandlersState>) : result) as HandlersState
      return { items: Chunk.toReadonlyArray(handlers.handlers), context }
    })
  ) as any

/** A route beside the API's (tests add one that hangs and one that dies); it runs under the same boundary. */
export interface ExtraRoute {
  readonly method: string
  readonly path: `/${string}`
  readonly handler: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>
}

export interface ExecutorOptions {
  readonly requestTimeoutMillis: number
  readonly extraRoutes?: ReadonlyArray<ExtraRoute> | undefined
  /** Where the generated document and its page are served. */
  readonly openApiPath?: `/${string}`
  readonly docsPath?: `/${string}`
}

/** What a request brings to its route, besides the request itself. */
interface Input {
  readonly request: HttpServerRequest.HttpServerRequest
  readonly params: Readonly<Record<string, string | undefined>>
  readonly query: Readonly<Record<string, string | Array<string>>>
  readonly body: RequestBody
  /** This request's own context: authentication adds what it provides (the principal) here. */
  readonly context: Context.Context<never>
}

interface CompiledRoute {
  readonly template: string
  readonly carriesSecret: boolean
  /** The context the route's fiber starts from (the server's, with the handlers' group's). */
  readonly context: Context.Context<never>
  readonly run: (input: Input) => Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>
}

/** A schema decoder made once; `undefined` for a value that decoded (the common case costs no effect). */
const decoderOf = (schema: Schema.Schema.Any) => {
  const decode = Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
  return (input: unknown): Either.Either<unknown, Effect.Effect<never, HttpApiError.HttpApiDecodeError>> =>
    Either.mapLeft(decode(input), HttpApiError.HttpApiDecodeError.refailParseError)
}

/** As `HttpApiBuilder` reads a query: a key the schema takes as an array gets an array for a single value. */
const normalizeUrlParams = (HttpApiBuilder as unknown as {
  readonly normalizeUrlParams: (params: Readonly<Record<string, string | Array<string>>>, ast: SchemaAST.AST) => Readonly<Record<string, string | Array<string>>>
}).normalizeUrlParams

/** Transformations whose encoding returns the value unchanged (only their decoding normalises it). */
const IDENTITY_ENCODED: ReadonlySet<SchemaAST.AST> = new Set([Schema.Lowercase.ast, Schema.Uppercase.ast, Schema.Trim.ast])

/**
 * Whether a value of this schema is already its encoded form (no transformation anywhere, class
 * instances included: their JSON is their fields), so the success needs no encoding pass.
 */
const encodesAsItself = (ast: SchemaAST.AST): boolean => {
  switch (ast._tag) {
    case "Refinement":
      return encodesAsItself(ast.from)
    case "TypeLiteral":
      return ast.propertySignatures.every((property) => encodesAsItself(property.type)) &&
        ast.indexSignatures.every((index) => encodesAsItself(index.type))
    case "Union":
      return ast.types.every(encodesAsItself)
    case "TupleType":
      return ast.elements.every((element) => encodesAsItself(element.type)) && ast.rest.every((rest) => encodesAsItself(rest.type))
    case "Transformation":
      // `compose` transforms nothing itself; a class's encoded form is its fields' (`from`), and an
      // instance's JSON is its own fields; a few transformations encode as the identity.
      if (ast.transformation._tag === "ComposeTransformation") return encodesAsItself(ast.from) && encodesAsItself(ast.to)
      if (ast.to._tag === "Declaration" && Option.isSome(SchemaAST.getSurrogateAnnotation(ast.to))) return encodesAsItself(ast.from)
      return IDENTITY_ENCODED.has(ast)
    case "Declaration":
    case "Suspend":
      return false
    default:
      return true
  }
}

/** The endpoint's success as a response: its status, its encoding, and its schema's encoded form. */
const successEncoderOf = (endpoint: HttpApiEndpoint.HttpApiEndpoint.AnyWithProps) => {
  const schemas = new Set<Schema.Schema.Any>()
  HttpApiSchema.deunionize(schemas, endpoint.successSchema)
  if (schemas.size !== 1) throw new Error(`${endpoint.method} ${endpoint.path}: one success schema per endpoint is supported`)
  const schema = [...schemas][0]!
  const status = HttpApiSchema.getStatusSuccessAST(schema.ast)
  if (HttpApiSchema.isVoid(schema.ast)) {
    const empty = HttpServerResponse.empty({ status })
    return (_: unknown) => Effect.succeed(empty)
  }
  const encoding = HttpApiSchema.getEncoding(schema.ast)
  const respond = (body: unknown): HttpServerResponse.HttpServerResponse =>
    encoding.kind === "Text"
      ? HttpServerResponse.text(body as string, { status, contentType: encoding.contentType })
      : HttpServerResponse.unsafeJson(body, { status, contentType: encoding.contentType })
  if (encoding.kind !== "Json" && encoding.kind !== "Text") {
    throw new Error(`${endpoint.method} ${endpoint.path}: the ${encoding.kind} encoding is not supported`)
  }
  if (encodesAsItself(schema.ast)) return (value: unknown) => Effect.succeed(respond(value))
  const encode = Schema.encodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
  // A success that does not encode is our bug: a defect, as in `HttpApi`.
  return (value: unknown) => Either.match(encode(value), { onLeft: Effect.die, onRight: (encoded) => Effect.succeed(respond(encoded)) })
}

type MiddlewareEntry = {
  readonly tag: HttpApiMiddleware.TagClassAny
  readonly step: Effect.Effect<unknown, unknown>
}

/**
 * A middleware's step: a security middleware tries its schemes in order, each with its credential
 * decoded as `HttpApiBuilder` decodes it, and the last failure is the answer.
 */
const middlewareStep = (tag: HttpApiMiddleware.TagClassAny, implementation: any): Effect.Effect<unknown, unknown> => {
  if (!HttpApiMiddleware.isSecurity(tag)) return implementation
  let step: Effect.Effect<unknown, unknown> | undefined
  for (const [key, security] of Object.entries(tag.security)) {
    const scheme = Effect.flatMap(HttpApiBuilder.securityDecode(security) as Effect.Effect<unknown>, implementation[key] as (credential: unknown) => Effect.Effect<unknown, unknown>)
    step = step === undefined ? scheme : Effect.catchAll(step, () => scheme)
  }
  return step ?? Effect.void
}

/** The group's middleware, then the endpoint's, as `HttpApiBuilder` orders them (the last runs first). */
const middlewareOf = (
  group: HttpApiGroup.HttpApiGroup.AnyWithProps,
  endpoint: HttpApiEndpoint.HttpApiEndpoint.AnyWithProps,
  context: Context.Context<never>
): ReadonlyArray<MiddlewareEntry> => {
  const entries = new Map<string, MiddlewareEntry>()
  for (const tag of [...group.middlewares, ...endpoint.middlewares] as Array<HttpApiMiddleware.TagClassAny>) {
    entries.set(tag.key, { tag, step: middlewareStep(tag, Context.unsafeGet(context, tag as any)) })
  }
  return [...entries.values()].reverse()
}

const unreadableBody = new ValidationFailed({
  detail: "The request body is not valid JSON.",
  errors: [new FieldIssue({ pointer: "", detail: "must be a JSON document" })]
})

/** One endpoint as plain steps: authenticate, decode, handle, encode. */
const compileEndpoint = (
  group: HttpApiGroup.HttpApiGroup.AnyWithProps,
  item: HttpApiBuilder.Handlers.Item<any, any>,
  groupContext: Context.Context<never>
) => {
  const endpoint = item.endpoint as HttpApiEndpoint.HttpApiEndpoint.AnyWithProps
  const decodePath = Option.getOrUndefined(Option.map(endpoint.pathSchema, decoderOf))
  const decodePayload = item.withFullRequest ? undefined : Option.getOrUndefined(Option.map(endpoint.payloadSchema, decoderOf))
  const decodeHeaders = Option.getOrUndefined(Option.map(endpoint.headersSchema, decoderOf))
  const urlParamsSchema = Option.getOrUndefined(endpoint.urlParamsSchema)
  const decodeUrlParams = urlParamsSchema === undefined ? undefined : decoderOf(urlParamsSchema)
  const encodeSuccess = successEncoderOf(endpoint)
  const middleware = middlewareOf(group, endpoint, groupContext)
  const handler = item.handler as (request: unknown) => Effect.Effect<unknown, unknown>

  /** Decoding as `HttpApiBuilder` does it, in its order: path, body, headers, query. */
  const handle = (input: Input): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown> => {
    const request: Record<string, unknown> = { request: input.request }
    if (decodePath !== undefined) {
      const path = decodePath(input.params)
      if (Either.isLeft(path)) return path.left
      request.path = path.right
    }
    if (decodePayload !== undefined) {
      // The body rules parsed it already; a route that takes a body and got none is a 400.
      if (input.body.text === undefined) return Effect.fail(unreadableBody)
      const payload = decodePayload(input.body.json)
      if (Either.isLeft(payload)) return payload.left
      request.payload = payload.right
    }
    if (decodeHeaders !== undefined) {
      const headers = decodeHeaders(input.request.headers)
      if (Either.isLeft(headers)) return headers.left
      request.headers = headers.right
    }
    if (decodeUrlParams !== undefined) {
      const urlParams = decodeUrlParams(normalizeUrlParams(input.query, urlParamsSchema!.ast))
      if (Either.isLeft(urlParams)) return urlParams.left
      request.urlParams = urlParams.right
    }
    const handled = Effect.flatMap(handler(request), (response) =>
      HttpServerResponse.isServerResponse(response) ? Effect.succeed(response) : encodeSuccess(response))
    return item.uninterruptible ? Effect.uninterruptible(handled) : handled
  }

  /** The middleware around it; what a middleware provides (the principal) goes into the request's own context. */
  const run = (input: Input): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown> => {
    let next = (): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown> => handle(input)
    for (let i = middleware.length - 1; i >= 0; i--) {
      const { step, tag } = middleware[i]!
      const inner = next
      const provide = (value: unknown) => {
        // This request's own map (see `Input.context`), so adding to it in place touches no other fiber.
        if (tag.provides !== undefined) input.context.unsafeMap.set((tag.provides as Context.Tag<any, any>).key, value)
        return inner()
      }
      next = tag.optional
        ? () => Effect.matchEffect(step, { onFailure: inner, onSuccess: provide })
        : () => Effect.flatMap(step, provide)
    }
    return next()
  }

  return {
    template: endpoint.path,
    method: endpoint.method,
    carriesSecret: Option.isSome(Context.getOption(endpoint.annotations, CarriesSecret)),
    run
  }
}

const routeNotFound = new NotFound({ code: "ROUTE_NOT_FOUND", detail: "No route matches this method and path." })

/** What is sent when even the boundary failed (a defect while rendering a failure); it is logged. */
const lastResort = () => new Response(null, { status: 500 })

type Fetch = (request: Request, server: Server<unknown>) => Response | Promise<Response>

/**
 * The document and its page, made at their first request rather than at start (making them costs
 * tens of milliseconds, and no probe or client of the API needs them to begin). Kept by the
 * executor that made them, not by the module.
 */
const lazyDocuments = (api: HttpApi.HttpApi.Any) => {
  let document: OpenApi.OpenAPISpec | undefined
  const documentOf = () => (document ??= OpenApi.fromApi(api as HttpApi.HttpApi.AnyWithProps))
  let documentResponse: HttpServerResponse.HttpServerResponse | undefined
  const openApi = Effect.sync(() => (documentResponse ??= HttpServerResponse.unsafeJson(documentOf())))
  let page: HttpServerResponse.HttpServerResponse | undefined
  const docs = Effect.suspend(() =>
    page !== undefined ? Effect.succeed(page) : Effect.tap(DocsPage.render(documentOf()), (made) => Effect.sync(() => (page = made)))
  )
  return { openApi, docs }
}

export interface Executor {
  readonly fetch: Fetch
  /** The route template a request would take, for any method (the 405 answer and the tests use it). */
  readonly routeOf: RouteLookup
}

/**
 * Compiles every endpoint of `api` (whose groups' handlers `group` provided) into one router,
 * and returns Bun's `fetch` for it.
 */
export const make = <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups, E, R>,
  options: ExecutorOptions
) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<HttpApiGroup.HttpApiGroup.ToService<ApiId, Groups>>()
    const router = FindMyWay.make<CompiledRoute>(ROUTER_CONFIG)
    const templates = FindMyWay.make<string>(ROUTER_CONFIG)
    const on = (method: string, path: string, route: CompiledRoute) => {
      router.on(method as any, path as `/${string}`, route)
      templates.on(method as any, path as `/${string}`, path)
    }
    for (const apiGroup of Object.values(api.groups) as unknown as Array<HttpApiGroup.HttpApiGroup.AnyWithProps>) {
      const handlers = Context.getOption(runtime.context, groupTag(api.identifier, apiGroup.identifier))
      if (Option.isNone(handlers)) return yield* Effect.dieMessage(`the group ${apiGroup.identifier} has no handlers`)
      const context = Context.merge(runtime.context, handlers.value.context)
      for (const item of handlers.value.items) {
        const compiled = compileEndpoint(apiGroup, item, handlers.value.context)
        on(compiled.method, compiled.template, { ...compiled, context })
      }
    }
    const raw = (path: string, handler: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>): CompiledRoute => ({
      template: path,
      carriesSecret: false,
      context: runtime.context,
      run: () => handler
    })
    const documents = lazyDocuments(api)
    on("GET", options.openApiPath ?? "/openapi.json", raw(options.openApiPath ?? "/openapi.json", documents.openApi))
    on("GET", options.docsPath ?? "/docs", raw(options.docsPath ?? "/docs", documents.docs))
    for (const extra of options.extraRoutes ?? []) on(extra.method, extra.path, raw(extra.path, extra.handler))
    const notFound: CompiledRoute = { template: "", carriesSecret: false, context: runtime.context, run: () => Effect.fail(routeNotFound) }

    const routeOf: RouteLookup = (method, url) =>
      (templates.find(method, url) ?? (method === "HEAD" ? templates.find("GET", url) : undefined))?.handler

    const boundary = yield* problemBoundary({ routeOf })
    const startSpan = plainServerSpan(yield* Effect.tracer, yield* Effect.clock)
    const timeoutMillis = options.requestTimeoutMillis
    const requestKey = HttpServerRequest.HttpServerRequest.key
    const parentSpanKey = Tracer.ParentSpan.key

    const fetch: Fetch = (source, server) => {
      const startedAt = Date.now()
      // The peer's address rate limits requests without credentials; for the others it is only
      // asked for if their credential fails or is new here (asking Bun cost about 4 µs a request).
      const address = source.headers.has("authorization") ? undefined : server.requestIP(source)?.address
      const request = address === undefined
        ? HttpServerRequest.fromWeb(source)
        : HttpServerRequest.fromWeb(source).modify({ remoteAddress: address })
      if (address === undefined) trackPeer(request, () => server.requestIP(source)?.address)
      // As platform-bun's own requests carry it: an event stream exempts its connection from Bun's idle timeout.
      ;(request as unknown as { bunServer: Server<unknown> }).bunServer = server
      const found = router.find(request.method, request.url) ?? (request.method === "HEAD" ? router.find("GET", request.url) : undefined)
      const route = found?.handler ?? notFound
      const { end, span } = startSpan(request, found === undefined ? undefined : route.template)
      // One copy of the route's context per request, with the request and its span: the request's own.
      const context = Context.unsafeMake(new Map(route.context.unsafeMap))
      context.unsafeMap.set(requestKey, request)
      context.unsafeMap.set(parentSpanKey, span)
      const body: RequestBody = { text: undefined, json: undefined }
      const input: Input = { request, params: found?.params ?? {}, query: found?.searchParams ?? {}, body, context }

      let sent: HttpServerResponse.HttpServerResponse | undefined
      let answer: Response | undefined
      let answered: ((response: Response) => void) | undefined
      const respond = (response: HttpServerResponse.HttpServerResponse) =>
        Effect.sync(() => {
          sent = response
          answer = HttpServerResponse.toWeb(response, { withoutBody: request.method === "HEAD", runtime })
          answered?.(answer)
        })
      const settle = (exit: Exit.Exit<unknown, unknown>): Response => {
        // Answered: the fiber's own exit may still be an interruption that came too late to matter.
        if (sent !== undefined) {
          end(Exit.succeed(sent))
          return answer!
        }
        end(exit as Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>)
        // Not a client abort: the boundary itself failed. The span has it; so does the log.
        if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
          Runtime.runFork(runtime)(Effect.logError("a request failed while answering; sent a bare 500", exit.cause))
        }
        return lastResort()
      }
      const fiber = Runtime.runFork(Runtime.make({ context, fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags }))(
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(
            boundary({ request, span, carriesSecret: route.carriesSecret, deadline: restoredDeadline(timeoutMillis, restore), body }, Effect.suspend(() => route.run(input))),
            respond
          )
        )
      )
      // A fiber starts at once and runs until it waits on something: a request served from memory
      // is answered before it returns, with no timer, listener or promise to set up.
      const done = fiber.unsafePoll()
      if (done !== null) return settle(done)
      return new Promise<Response>((resolve) => {
        answered = resolve
        const deadline = setTimeout(() => fiber.unsafeInterruptAsFork(deadlineFiberId), Math.max(0, startedAt + timeoutMillis - Date.now()))
        // As the platform's adapter does: the interruption is marked as the client's, so the span and
        // the metrics record a client abort rather than a server failure.
        const abort = () => fiber.unsafeInterruptAsFork(HttpServerError.clientAbortFiberId)
        fiber.addObserver((exit) => {
          clearTimeout(deadline)
          // The request outlives its fiber when the answer streams: its listener would keep the
          // fiber, its context and its span alive for the stream's whole life.
          source.signal.removeEventListener("abort", abort)
          const response = settle(exit)
          if (response !== answer) resolve(response)
        })
        source.signal.addEventListener("abort", abort, { once: true })
      })
    }

    return { fetch, routeOf } satisfies Executor
  })
