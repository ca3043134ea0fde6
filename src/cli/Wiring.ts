/**
 * What the CLI's data commands run on: the configured database (migrated) and the services they
 * call, with no background work (no ledger writer or retention job, no change-generation poller,
 * no event bus, no subscription) and none of the HTTP stack. Loaded only by a command that needs it.
 */
import { Effect, Layer, Option } from "effect"
import * as Cache from "../../layers/cache/Cache.js"
import * as Database from "../../layers/database/Database.js"
import * as LoopDelay from "../../layers/resilience/LoopDelay.js"
import { CachedReads, CachePolicy } from "../../services/CachedReads.js"
import { ErrorLedger, ErrorRecords } from "../../services/ErrorLedger.js"
import { ErrorsRepo } from "../../services/ErrorsRepo.js"
import { Tenants } from "../../services/Tenants.js"
import { appConfig, type AppConfigShape } from "../Config.js"


export { ErrorRecords, Tenants }

const servicesOn = (config: AppConfigShape) =>
  Layer.mergeAll(Tenants.Default, ErrorRecords.Default).pipe(
    Layer.provideMerge(CachedReads.Default),
    // Each row at once: a one-shot process has no writer loop to hand rows to.
    Layer.provideMerge(ErrorLedger.Default({ retentionDays: config.errorRetentionDays, inline: true })),
    Layer.provideMerge(ErrorsRepo.Default),
    // The shared cache, so that a key revoked here is dropped from it too.
    Layer.provideMerge(Option.match(config.redisUrl, { onNone: () => Cache.inProcess(), onSome: (url) => Cache.redis(url) })),
    Layer.provideMerge(Layer.succeed(CachePolicy, { required: config.cacheRequired })),
    Layer.provideMerge(Database.layer({ url: config.database, sqliteBusyTimeoutMillis: Database.SQLITE_BUSY_TIMEOUT_MILLIS, followChanges: false })),
    // Nothing else runs on this process's event loop, so there is no delay to discount.
    Layer.provideMerge(Layer.succeed(LoopDelay.LoopDelay, LoopDelay.unmeasured))
  )

export const ServicesLive = Layer.unwrapEffect(Effect.map(appConfig, servicesOn))

export type CliServices = Layer.Layer.Success<typeof ServicesLive>
