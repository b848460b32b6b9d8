import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Crash injection for the real-kernel crash suites, which must kill the node agent at every
 * step boundary of an operation, not wherever a timer happens to land. A step is one side
 * effect: a system command that acts (run() without `query`) or a state write. With
 * DMTHIN_CRASH_SCOPE=<scope> and DMTHIN_CRASH_AFTER_STEPS=<n> in the environment, the
 * process SIGKILLs itself right after the n-th step taken inside that scope (`crashScope`).
 * Unset, as in every deployment, a step is one comparison. Production code only names scopes
 * and steps; nothing else changes.
 */
const current = new AsyncLocalStorage<string>();
let taken = 0;
let arming: { scope: string; after: number } | null | undefined;

/**
 * Read at the first scope or step, not when the module loads: the crash suites load a spare
 * driver's code ahead of its start and set its environment afterwards (test/realkernel/warm.ts).
 */
function armed(): { scope: string; after: number } | null {
  if (arming === undefined) {
    const scope = process.env.DMTHIN_CRASH_SCOPE;
    const after = Number(process.env.DMTHIN_CRASH_AFTER_STEPS ?? 0);
    arming = scope && after > 0 ? { scope, after } : null;
  }
  return arming;
}

/** Runs `fn` as the scope `name` (e.g. "make/vol-…"): steps inside it count toward a crash. */
export function crashScope<T>(name: string, fn: () => Promise<T>): Promise<T> {
  return armed() ? current.run(name, fn) : fn();
}

/** Marks the end of one side effect; kills the process when it is the armed one. */
export function step(what: string): void {
  const a = armed();
  if (!a || current.getStore() !== a.scope) return;
  if (++taken < a.after) return;
  process.stderr.write(`dmthin-csi: crash injected after step ${taken} (${what}) of ${a.scope}\n`);
  process.kill(process.pid, 'SIGKILL');
}
