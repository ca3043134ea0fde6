/** Once per `bun test` run: the PostgreSQL template of the run is dropped after the last file. */
import { afterAll } from "bun:test"
import { dropTemplate } from "./postgres.js"

afterAll(dropTemplate)
