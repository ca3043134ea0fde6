/**
 * The official SDK's parts the 2025-11-25 era uses. They are loaded on the first `initialize`, not
 * at start: evaluating the SDK (and the zod schemas it builds) took about 0.3 s here, which every
 * start of the server and of the CLI would otherwise pay.
 */
export { Server } from "@modelcontextprotocol/sdk/server/index.js"
export { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"
export {
  CallToolRequestSchema,
  ErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema
} from "@modelcontextprotocol/sdk/types.js"
