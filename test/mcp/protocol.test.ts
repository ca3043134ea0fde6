/** The session revisions we name are the SDK's own, written out so the SDK loads only with the first session. */
import { SUPPORTED_PROTOCOL_VERSIONS } from "@modelcontextprotocol/sdk/types.js"
import { expect, test } from "bun:test"
import { LEGACY_VERSIONS } from "../../src/mcp/Protocol.js"

test("LEGACY_VERSIONS is the SDK's list of supported versions", () => {
  expect(LEGACY_VERSIONS).toEqual(SUPPORTED_PROTOCOL_VERSIONS)
})
