/**
 * What every side-effecting call needs from the request that caused it: a deadline
 * (so a system command never outlives the RPC that asked for it) and a cancel signal.
 */
export interface OpContext {
  /** Epoch milliseconds after which work should stop; undefined = no deadline. */
  readonly deadline?: number;
  readonly signal?: AbortSignal;
}

export const background: OpContext = {};

/** Milliseconds left before the deadline, capped at `max` and never below `min`. */
export function timeLeft(ctx: OpContext, max: number, min = 1000): number {
  if (ctx.deadline === undefined) return max;
  return Math.max(min, Math.min(max, ctx.deadline - Date.now()));
}

export function withTimeout(ctx: OpContext, ms: number): OpContext {
  const deadline = Date.now() + ms;
  return { ...ctx, deadline: ctx.deadline === undefined ? deadline : Math.min(ctx.deadline, deadline) };
}
