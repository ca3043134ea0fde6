/**
 * The scheduler every fiber of the server runs on. It schedules exactly as Effect's default
 * (`MixedScheduler`: microtasks, then a timer after 2048 drains in a row so timers and I/O are not
 * starved, a fiber yields after 2048 operations) with two costs of the default removed, each
 * measured on the hot read:
 * - The default asks two fiber references on every operation whether the fiber should yield (its
 *   op budget and its priority). Bulwark sets neither per fiber, so both are constants here.
 * - Since Effect 3.20 the default keeps a task runner per fiber (in a `WeakMap`) so that tasks of
 *   fibers started under different `AsyncLocalStorage` contexts never drain together. Bulwark uses
 *   no `AsyncLocalStorage`; one runner for the process, as before 3.20, saves an allocation and a
 *   weak-map entry per fiber, of which every request forks at least one.
 */
import * as Scheduler from "effect/Scheduler"

/** As Effect's default: operations a fiber runs before it yields to others. */
const MAX_OPS_BEFORE_YIELD = 2048
/** As Effect's default: microtask drains in a row before one goes through a timer. */
const MAX_MICROTASK_DRAINS = 2048
/** Effect's default scheduling priority, which nothing here changes. */
const PRIORITY = 0

export class ServerScheduler implements Scheduler.Scheduler {
  private readonly runner = new Scheduler.SchedulerRunner((depth, drain) => {
    if (depth >= MAX_MICROTASK_DRAINS) setTimeout(() => drain(0), 0)
    else queueMicrotask(() => drain(depth + 1))
  })

  shouldYield(fiber: { readonly currentOpCount: number }): number | false {
    return fiber.currentOpCount > MAX_OPS_BEFORE_YIELD ? PRIORITY : false
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.runner.scheduleTask(task, priority)
  }
}

export const serverScheduler: Scheduler.Scheduler = new ServerScheduler()
