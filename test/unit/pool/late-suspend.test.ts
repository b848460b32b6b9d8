// A suspend that outlives its deadline completes in the kernel after the RPC answered: the driver
// must resume the device then, not leave its I/O hanging until the next periodic reconcile.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { DmError } from '../../../src/devmapper/types.ts';
import { resumeLateSuspend } from '../../../src/pool/late-suspend.ts';
import { ctx, fakeDriver, GiB, type FakeDriver } from '../support/fake-driver.ts';
import { sleep } from '../../../src/system/delay.ts';

const spec = (id: string, origin?: string) => ({ id, dmName: `dm-${id}`, kind: origin ? 'snapshot' as const : 'volume' as const, sizeBytes: GiB, meta: {}, ...(origin ? { origin } : {}) });
const timeout = () => new DmError('timeout', 'DM_DEV_SUSPEND dm-v: ETIMEDOUT (no answer within 1000 ms)', { errno: 'ETIMEDOUT' });

async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  for (const t0 = Date.now(); !(await cond());) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

describe('a suspend that completes after its deadline', () => {
  let fd: FakeDriver;
  beforeEach(async () => {
    fd = await fakeDriver();
    await fd.driver.devices.create(ctx, spec('v'));
    await fd.driver.devices.activate(ctx, 'v');
  });
  afterEach(() => fd.cleanup());
  const suspended = async () => (await fd.dm.info(ctx, 'dm-v'))?.suspended;
  const state = async () => (await fd.store.getDevice('v'))?.state;

  it('a snapshot whose origin suspend timed out and then took effect resumes the origin and records it Activated', async () => {
    fd.dm.inject({ op: 'suspend', match: /dm-v/, when: 'after', error: timeout() });
    await assert.rejects(fd.driver.devices.create(ctx, spec('s', 'v')), { code: 4 }); // DEADLINE_EXCEEDED
    assert.equal(await fd.store.getDevice('s'), undefined, 'the snapshot is rolled back');
    await until('origin resumed', async () => (await suspended()) === false && (await state()) === 'Activated');
    assert.deepEqual(fd.dm.violations, []);
    // The retry the CO makes now finds a usable origin and snapshots it.
    const s = await fd.driver.devices.create(ctx, spec('s', 'v'));
    assert.equal(s.state, 'Created');
    assert.equal(await suspended(), false);
  });

  it('waits for a suspend the kernel completes only later, and resumes it then', async () => {
    fd.dm.inject({ op: 'suspend', match: /dm-v/, error: timeout() });
    await assert.rejects(fd.driver.devices.create(ctx, spec('s', 'v')), { code: 4 });
    assert.equal(await state(), 'Suspending', 'the trying state stays while the kernel still works on it');
    await sleep(300);
    assert.equal(await state(), 'Suspending', 'nothing is settled before the kernel shows the suspend');
    await fd.dm.suspend(ctx, 'dm-v'); // the kernel's late completion
    await until('origin resumed', async () => (await suspended()) === false && (await state()) === 'Activated');
  });

  it('does not resume a device another snapshot suspended: it looks only between snapshots', async () => {
    await fd.store.updateDevice('v', (r) => { r.state = 'Suspending'; });
    const order: string[] = [];
    // A snapshot's suspend-message-resume holds the message section; the watcher waits for it.
    await fd.driver.pool.serialised(async () => {
      await fd.dm.suspend(ctx, 'dm-v');
      const watching = resumeLateSuspend(fd.driver.pool, (await fd.store.getDevice('v'))!, { everyMs: 10, forMs: 300 });
      void watching.then(() => order.push('watcher gave up'));
      await sleep(100);
      order.push('snapshot resumes');
      assert.equal(await suspended(), true, 'still suspended inside the section');
      await fd.dm.resume(ctx, 'dm-v');
    });
    await until('watcher done', async () => order.length === 2);
    assert.deepEqual(order, ['snapshot resumes', 'watcher gave up']);
    assert.equal(await state(), 'Suspending', 'the watcher saw no suspension of its own to undo');
  });

  it('gives up after its watch when the suspend never shows, leaving the trying state to the reconcile', async () => {
    await fd.store.updateDevice('v', (r) => { r.state = 'Suspending'; });
    await resumeLateSuspend(fd.driver.pool, (await fd.store.getDevice('v'))!, { everyMs: 10, forMs: 100 });
    assert.equal(await state(), 'Suspending');
    assert.equal(await suspended(), false);
    const report = await fd.driver.checkPool(ctx);
    assert.deepEqual(report.repaired.map((r) => `${r.id} ${r.from} ${r.action}`), ['v Suspending settled']);
  });
});
