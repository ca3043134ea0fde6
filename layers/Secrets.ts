/**
 * Secrets the process needs. Given in the environment they are used as they are; otherwise they are
 * generated on first start and kept under the data directory with mode 0600. The file's path is
 * logged, never the secret.
 */
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { randomBase64Url } from "../src/Digests.js"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { dataDirectoryOf, type DatabaseUrl, StartupError } from "../src/Config.js"

export class AdminToken extends Context.Tag("bulwark/AdminToken")<AdminToken, Redacted.Redacted<string>>() {}

/** The HMAC key for access tokens. */
export class JwtSecret extends Context.Tag("bulwark/JwtSecret")<JwtSecret, Redacted.Redacted<string>>() {}

/** Reads the secret stored at `dataDirectory/fileName`, creating it (mode 0600) on first use. */
export const storedSecret = (variable: string, dataDirectory: string, fileName: string) =>
  Effect.gen(function*() {
    const path = join(dataDirectory, fileName)
    const secret = yield* Effect.try({
      try: () => {
        if (existsSync(path)) {
          const stored = readFileSync(path, "utf8").trim()
          if (stored.length < 32) throw new Error(`${path} holds a secret shorter than 32 characters`)
          return { value: stored, created: false }
        }
        mkdirSync(dataDirectory, { recursive: true })
        const value = randomBase64Url(32)
        writeFileSync(path, value + "\n", { mode: 0o600, flag: "wx" })
        chmodSync(path, 0o600)
        return { value, created: true }
      },
      catch: (cause) =>
        new StartupError(variable, `unset, and the stored one at ${path} cannot be used (${cause instanceof Error ? cause.message : String(cause)})`)
    })
    yield* Effect.logInfo(secret.created ? `generated ${variable}` : `using stored ${variable}`).pipe(
      Effect.annotateLogs({ path })
    )
    return Redacted.make(secret.value)
  })

/**
 * The configured secret when given. Else, on SQLite, the one stored (or generated) under the data
 * directory; on PostgreSQL every instance must share it, so none is generated and the start stops.
 */
const secretLayer = <Id>(tag: Context.Tag<Id, Redacted.Redacted<string>>, variable: string, fileName: string) =>
(configured: Option.Option<Redacted.Redacted<string>>, database: DatabaseUrl) =>
  Layer.effect(
    tag,
    Option.match(configured, {
      onSome: Effect.succeed,
      onNone: () =>
        database._tag === "Postgres"
          ? Effect.fail(
            new StartupError(variable, `required with PostgreSQL (every instance must share it): set ${variable} or ${variable}_FILE`)
          )
          : storedSecret(variable, dataDirectoryOf(database), fileName)
    })
  )

export const adminTokenLayer = secretLayer(AdminToken, "BULWARK_ADMIN_TOKEN", "admin-token")

export const jwtSecretLayer = secretLayer(JwtSecret, "BULWARK_JWT_SECRET", "jwt-secret")
