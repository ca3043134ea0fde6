/**
 * Start-up runs a great deal of code once (every module's top level, every layer's construction),
 * and JavaScriptCore's JIT compiles what looks hot on the same core: on one core, compiling code
 * that never runs again cost more than interpreting it. Measured pinned to one core, start to
 * `/health/ready` took 700-720 ms with the normal policy and 540-590 ms with the JIT's thresholds
 * scaled by 100. So the thresholds are raised before any other module is evaluated (this module is
 * the entry point's first import) and set back to normal once the server listens, before it serves
 * its first request: what serves requests is compiled as usual.
 *
 * The policy is the engine's, for the whole process; only the entry point sets it, never a layer,
 * so a server built inside another program (the tests) runs under that program's policy.
 */
const STARTUP_JIT_POLICY = 100
const NORMAL_JIT_POLICY = 1

Bun.unsafe.setJITPolicy(STARTUP_JIT_POLICY)

/** Back to the normal JIT policy: called once the server listens. */
export const startupOver = (): void => Bun.unsafe.setJITPolicy(NORMAL_JIT_POLICY)
