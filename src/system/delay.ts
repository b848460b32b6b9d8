/**
 * Resolves after `ms`, or at once when `signal` aborts: a wait never outlives the operation it serves.
 * `unref`: the wait alone does not keep the process alive (a watch that must not delay an exit).
 */
export const sleep = (ms: number, signal?: AbortSignal, opts: { unref?: boolean } = {}): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (opts.unref) t.unref();
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

/** Capped exponential backoff with jitter, so a flapping API server is not hammered in lockstep. */
export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  const ms = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}
