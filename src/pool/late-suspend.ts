import { isDmError } from '../devmapper/types.ts';
import { errorMessage } from '../errors.ts';
import { background, type OpContext } from '../system/context.ts';
import { sleep } from '../system/delay.ts';
import type { DeviceRecord } from '../state/types.ts';
import { retry, SUSPEND_RETRY } from './retry.ts';
import type { ThinPool } from './thinpool.ts';

export interface LateSuspendWatch {
  everyMs: number;
  /** Past this the periodic reconcile is the only net (a suspend that failed in the kernel never shows). */
  forMs: number;
}

/** dm-thin's default no_space_timeout is 60 s: a flush waiting on a full pool can take that and more. */
export const LATE_SUSPEND: LateSuspendWatch = { everyMs: 250, forMs: 10 * 60_000 };

/**
 * A suspend whose deadline passed is still running in the kernel (a flush waiting for writes
 * queued in a full pool, say) and leaves the device suspended when it completes, after the RPC
 * has answered and with nobody left to resume it: the volume's I/O would hang until the next
 * periodic reconcile. Resuming at once does nothing (the kernel resumes only a device already
 * suspended, and this one is not yet), so the device is watched and resumed once the kernel shows
 * it suspended. Look and resume hold the pool's message lock: every snapshot suspends and resumes
 * its origins inside it, so a suspension seen there is nobody's freeze, only this leftover. The
 * Suspending the snapshot recorded becomes Activated. Never rejects.
 */
export async function resumeLateSuspend(pool: ThinPool, origin: DeviceRecord, watch: LateSuspendWatch = LATE_SUSPEND): Promise<void> {
  const { dm, store, log } = pool.deps;
  const look = (): Promise<boolean> => pool.serialised(async () => {
    const info = await dm.info(background, origin.dmName);
    if (!info?.live) return true; // deactivated or gone meanwhile: nothing to resume
    if (!info.suspended) return false;
    await retry(background, SUSPEND_RETRY, () => dm.resume(background, origin.dmName));
    await store.updateDevice(origin.id, (r) => {
      if (r.state === 'Suspending') r.state = 'Activated';
      r.updatedAt = new Date().toISOString();
    });
    log.warn('resumed a device whose suspend completed after its deadline', { volume: origin.id });
    return true;
  });
  try {
    for (const until = Date.now() + watch.forMs; Date.now() < until; await sleep(watch.everyMs, undefined, { unref: true })) {
      if (await look()) return;
    }
    log.warn('a suspend that outlived its deadline has not completed; the periodic reconcile takes over', { volume: origin.id });
  } catch (err) {
    log.error('could not resume a device whose suspend outlived its deadline; the periodic reconcile takes over', { volume: origin.id, error: errorMessage(err) });
  }
}

/**
 * A snapshot's flush suspend of `origin` (single or group: the one way either freezes an origin).
 * When it outlives its deadline the kernel may still complete it, so the origin is watched and
 * resumed (resumeLateSuspend) while the caller gets the timeout.
 */
export async function suspendForSnapshot(pool: ThinPool, ctx: OpContext, origin: DeviceRecord): Promise<void> {
  try {
    await retry(ctx, SUSPEND_RETRY, () => pool.deps.dm.suspend(ctx, origin.dmName));
  } catch (err) {
    if (isDmError(err, 'timeout')) void resumeLateSuspend(pool, origin);
    throw err;
  }
}
