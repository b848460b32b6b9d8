// The fake's event numbers and DM_DEV_WAIT, as dm-thin raises them (kernel-thin-provisioning.rst):
// every resume, the low-water edge once per resume, the switch to out_of_data_space.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeDeviceMapper } from '../../../doubles/devmapper/fake.ts';
import { DmError } from '../../../../src/devmapper/types.ts';
import { background as ctx, withTimeout } from '../../../../src/system/context.ts';

const MiB = 1024 * 1024;
/** 64 MiB: 1024 blocks of 64 KiB, low-water mark 100 blocks. */
const TABLE = '0 131072 thin-pool /dev/loop1 /dev/loop0 128 100';

async function world() {
  const dm = new FakeDeviceMapper();
  await dm.create(ctx, 'pool', TABLE);
  await dm.message(ctx, 'pool', 'create_thin 1');
  const p = (await dm.info(ctx, 'pool'))!;
  await dm.create(ctx, 't', `0 262144 thin ${p.major}:${p.minor} 1`);
  const events = async () => (await dm.info(ctx, 'pool'))!.events!;
  return { dm, events };
}

describe('FakeDeviceMapper events', () => {
  it('a resume raises one; a wait for another number answers at once', async () => {
    const { dm, events } = await world();
    const n = await events();
    await dm.suspend(ctx, 'pool');
    await dm.resume(ctx, 'pool');
    assert.equal(await events(), n + 1);
    assert.equal(await dm.waitEvent(ctx, 'pool', n), n + 1);
  });

  it('the low-water edge fires once until the next resume; running out of space fires again', async () => {
    const { dm, events } = await world();
    const n = await events();
    const wait = dm.waitEvent(ctx, 'pool', n);
    dm.write('t', 58 * MiB); // 928 blocks used, 96 free: under the mark
    assert.equal(await wait, n + 1);
    dm.write('t', MiB, 58 * MiB);
    assert.equal(await events(), n + 1, 'edge-triggered: no second low-water event');
    assert.throws(() => dm.write('t', 8 * MiB, 59 * MiB), (e: unknown) => e instanceof DmError && e.kind === 'no_space');
    assert.equal(await events(), n + 2, 'out_of_data_space is a mode change, an event');
    await dm.reload(ctx, 'pool', TABLE.replace('131072', '262144'));
    await dm.resume(ctx, 'pool');
    const m = await events();
    dm.write('t', 64 * MiB, 64 * MiB); // 1984 of 2048 used: under the mark again, after a resume
    assert.equal(await events(), m + 1);
  });

  it('a wait ends with kind timeout at its deadline or its signal, not_found for no device', async () => {
    const { dm, events } = await world();
    const n = await events();
    await assert.rejects(dm.waitEvent(withTimeout(ctx, 20), 'pool', n), (e: unknown) => e instanceof DmError && e.kind === 'timeout');
    const ac = new AbortController();
    const p = dm.waitEvent({ signal: ac.signal }, 'pool', n);
    ac.abort();
    await assert.rejects(p, (e: unknown) => e instanceof DmError && e.kind === 'timeout');
    await assert.rejects(dm.waitEvent(ctx, 'nope', 0), (e: unknown) => e instanceof DmError && e.kind === 'not_found');
  });
});
