/**
 * Writes the OpenAPI document (what `GET /openapi.json` serves) to the path given, or to stdout,
 * without building the server: CI lints it and clients generate from it.
 */
import { OpenApi } from "@effect/platform"
import { Api } from "../Api.js"

const text = JSON.stringify(OpenApi.fromApi(Api), null, 2) + "\n"
const target = process.argv[2]
if (target === undefined) process.stdout.write(text)
else await Bun.write(target, text)
