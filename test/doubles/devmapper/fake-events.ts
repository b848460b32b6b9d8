import type { OpContext } from '../../../src/system/context.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import type { FakeDevice } from './fake-tables.ts';

/**
 * The kernel's per-device event numbers and DM_DEV_WAIT: a resume always raises an event, a
 * pool raises one when its free data blocks drop below the table's low-water mark (once per
 * resume, the edge the kernel doc describes) and one when it runs out of data space.
 */
export class FakeEvents {
  readonly #waiters = new Set<() => void>();
  /** Pools whose low-water event has fired since their last resume. */
  readonly #lowWaterFired = new WeakSet<FakeDevice>();

  raise(dev: FakeDevice): void {
    dev.events++;
    for (const wake of [...this.#waiters]) wake();
  }

  resumed(dev: FakeDevice): void {
    this.#lowWaterFired.delete(dev);
    this.raise(dev);
  }

  /** After a write to a thin of `pool`: the low-water edge, and the switch to out_of_data_space. */
  wrote(pool: FakeDevice, modeBefore: string): void {
    const pt = pool.live?.pool;
    if (!pt) return;
    const free = pt.meta.totalDataBlocks - pt.meta.usedDataBlocks;
    if (free <= pt.lowWater && !this.#lowWaterFired.has(pool)) { // dm-thin's check_low_water_mark
      this.#lowWaterFired.add(pool);
      this.raise(pool);
    }
    if (pt.meta.mode !== modeBefore) this.raise(pool);
  }

  /** Resolves once `read()` (the device's event number, undefined when it is gone) differs from eventNr. */
  wait(ctx: OpContext, name: string, read: () => number | undefined, eventNr: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error, n?: number): void => {
        this.#waiters.delete(check);
        clearTimeout(timer);
        ctx.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err); else resolve(n as number);
      };
      const check = (): void => {
        const n = read();
        if (n === undefined) done(new DmError('not_found', `waiting for an event on ${name}: no such device`, { errno: 'ENXIO' }));
        else if (n !== eventNr) done(undefined, n);
      };
      const onAbort = (): void => done(new DmError('timeout', `waiting for an event on ${name}: cancelled`));
      const timer = ctx.deadline === undefined ? undefined
        : setTimeout(() => done(new DmError('timeout', `waiting for an event on ${name}: deadline passed`)), Math.max(0, ctx.deadline - Date.now()));
      this.#waiters.add(check);
      ctx.signal?.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal?.aborted) onAbort();
      else check();
    });
  }
}
