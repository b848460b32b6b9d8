import { isDmError, type DmErrorKind } from '../devmapper/types.ts';
import type { OpContext } from '../system/context.ts';
import { sleep } from '../system/delay.ts';

export interface RetryPolicy {
  attempts: number;
  delayMs: number;
  /** Error kinds worth another try; anything else fails at once. */
  on: readonly DmErrorKind[];
}

/** A device held by a closing file or a racing udev probe is busy for a moment: retried on EBUSY. */
export const BUSY_RETRY: RetryPolicy = { attempts: 50, delayMs: 100, on: ['busy'] };
/** Suspend and resume can race with table loads: a few short retries, as containerd's devmapper does. */
export const SUSPEND_RETRY: RetryPolicy = { attempts: 3, delayMs: 100, on: ['busy', 'invalid'] };

/** Retries fn while it fails with a retryable kind, never past the context deadline. */
export async function retry<T>(ctx: OpContext, policy: RetryPolicy, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = policy.on.some((k) => isDmError(err, k));
      const outOfTime = ctx.deadline !== undefined && Date.now() + policy.delayMs >= ctx.deadline;
      if (!retryable || attempt >= policy.attempts || outOfTime || ctx.signal?.aborted) throw err;
      await sleep(policy.delayMs * Math.min(attempt, 5), ctx.signal);
    }
  }
}
