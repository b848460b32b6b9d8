import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeDeviceMapper } from '../../../doubles/devmapper/fake.ts';
import { DmError, type DmErrorKind } from '../../../../src/devmapper/types.ts';
import { background as ctx } from '../../../../src/system/context.ts';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024; // 128-sector data blocks
const POOL_TABLE = '0 2097152 thin-pool /dev/loop1 /dev/loop0 128 32768 1 skip_block_zeroing';

async function kindOf(p: Promise<unknown>): Promise<DmErrorKind> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof DmError, `expected DmError, got ${String(err)}`);
  return err.kind;
}

function kindOfSync(fn: () => void): DmErrorKind | 'other' {
  try { fn(); } catch (err) { return err instanceof DmError ? err.kind : 'other'; }
  assert.fail('expected a throw');
}

/** A 1 GiB pool named "pool" (16384 blocks of 64 KiB). */
async function withPool(table = POOL_TABLE): Promise<FakeDeviceMapper> {
  const dm = new FakeDeviceMapper();
  await dm.create(ctx, 'pool', table);
  return dm;
}

async function thin(dm: FakeDeviceMapper, name: string, id: number, sectors = 2097152): Promise<void> {
  const pool = await dm.info(ctx, 'pool');
  assert.ok(pool);
  await dm.create(ctx, name, `0 ${sectors} thin ${pool.major}:${pool.minor} ${id}`);
}

describe('FakeDeviceMapper pool', () => {
  it('a new pool reports its size, empty usage and transaction id 0, like the kernel', async () => {
    const dm = await withPool();
    const s = await dm.poolStatus(ctx, 'pool');
    assert.equal(s.totalDataBlocks, 16384);
    assert.equal(s.usedDataBlocks, 0);
    assert.equal(s.totalMetadataBlocks, 16384);
    assert.equal(s.transactionId, 0);
    assert.equal(s.mode, 'rw');
    assert.equal(s.metadataLowWatermark, 1024);
    const t = await dm.poolTable(ctx, 'pool');
    assert.deepEqual([t.dataBlockSectors, t.lowWaterMark, t.features], [128, 32768, ['skip_block_zeroing']]);
    assert.match(dm.statusLine('pool'), /^0 2097152 thin-pool 0 \d+\/16384 0\/16384 - rw discard_passdown queue_if_no_space - 1024 $/);
  });

  it('rejects bad pool tables as the kernel would', async () => {
    const dm = new FakeDeviceMapper();
    assert.equal(await kindOf(dm.create(ctx, 'p', '0 2097152 thin-pool /dev/m /dev/d 100 0')), 'invalid');
    assert.equal(await kindOf(dm.create(ctx, 'p', '0 2097152 thin-pool /dev/m /dev/d 128 0 1 bogus')), 'invalid');
    assert.equal(await dm.info(ctx, 'p'), undefined, 'a failed create leaves nothing behind');
  });

  it('create_thin: EEXIST for a taken id, EINVAL for ids of 2^24 and up or malformed', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 0');
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'create_thin 0')), 'exists');
    assert.equal(await kindOf(dm.message(ctx, 'pool', `create_thin ${2 ** 24}`)), 'invalid');
    await dm.message(ctx, 'pool', `create_thin ${2 ** 24 - 1}`);
    for (const bad of ['create_thin', 'create_thin x', 'create_thin -1', 'create_thin 1 2', 'frobnicate 1']) {
      assert.equal(await kindOf(dm.message(ctx, 'pool', bad)), 'invalid', bad);
    }
    assert.deepEqual(dm.metadataThinIds('pool'), [0, 2 ** 24 - 1]);
  });

  it('create_snap: EEXIST for a taken id, ENODATA for a missing origin', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'create_snap 2 9')), 'no_data');
    await dm.message(ctx, 'pool', 'create_snap 2 1');
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'create_snap 2 1')), 'exists');
    assert.deepEqual(dm.metadataThinIds('pool'), [1, 2]);
  });

  it('delete: ENODATA when missing, EBUSY while a dm device maps the id (live or inactive table)', async () => {
    const dm = await withPool();
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'delete 1')), 'no_data');
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'delete 1')), 'busy');
    await dm.remove(ctx, 'v1');
    await dm.message(ctx, 'pool', 'delete 1');
    assert.deepEqual(dm.metadataThinIds('pool'), []);
  });

  it('set_transaction_id is a compare-and-swap', async () => {
    const dm = await withPool();
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'set_transaction_id 1 2')), 'invalid');
    await dm.message(ctx, 'pool', 'set_transaction_id 0 5');
    assert.equal((await dm.poolStatus(ctx, 'pool')).transactionId, 5);
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'set_transaction_id 0 6')), 'invalid');
  });

  it('metadata snapshots show as a held root; a second reserve is EBUSY, a spare release EINVAL', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'reserve_metadata_snap');
    assert.match(dm.statusLine('pool'), / \d+ rw /);
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'reserve_metadata_snap')), 'busy');
    await dm.message(ctx, 'pool', 'release_metadata_snap');
    assert.match(dm.statusLine('pool'), / - rw /);
    assert.equal(await kindOf(dm.message(ctx, 'pool', 'release_metadata_snap')), 'invalid');
  });

  it('messages to a missing device are not_found, to a non-pool invalid', async () => {
    const dm = await withPool();
    assert.equal(await kindOf(dm.message(ctx, 'nopool', 'create_thin 1')), 'not_found');
    await dm.create(ctx, 'lin', '0 8 zero');
    assert.equal(await kindOf(dm.message(ctx, 'lin', 'create_thin 1')), 'invalid');
  });

  it('ro, fail and needs_check refuse every message with EOPNOTSUPP (kind invalid)', async () => {
    for (const setup of [
      (dm: FakeDeviceMapper) => dm.setPoolMode('pool', 'ro'),
      (dm: FakeDeviceMapper) => dm.setPoolMode('pool', 'fail'),
      (dm: FakeDeviceMapper) => dm.setNeedsCheck('pool', true),
    ]) {
      const dm = await withPool();
      setup(dm);
      const err = await dm.message(ctx, 'pool', 'create_thin 1').then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof DmError);
      assert.deepEqual([err.kind, err.errno], ['invalid', 'EOPNOTSUPP']);
    }
  });

  it("a failed pool reports 'Fail' for itself and its thins; needs_check reads as ro", async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    dm.setNeedsCheck('pool', true);
    const ro = await dm.poolStatus(ctx, 'pool');
    assert.deepEqual([ro.mode, ro.needsCheck], ['ro', true]);
    dm.setPoolMode('pool', 'fail');
    assert.equal((await dm.poolStatus(ctx, 'pool')).mode, 'fail');
    assert.equal((await dm.thinStatus(ctx, 'v1')).fail, true);
    assert.equal(await kindOf(dm.create(ctx, 'v2', '0 8 thin /dev/mapper/pool 1')), 'invalid');
  });
});

describe('FakeDeviceMapper thin devices and data', () => {
  it('activation needs the pool and the id; tables name the pool by MAJOR:MINOR', async () => {
    const dm = await withPool();
    assert.equal(await kindOf(dm.create(ctx, 'v1', '0 2048 thin /dev/mapper/pool 1')), 'no_data');
    assert.equal(await kindOf(dm.create(ctx, 'v1', '0 2048 thin /dev/mapper/nopool 1')), 'not_found');
    await dm.message(ctx, 'pool', 'create_thin 1');
    await dm.create(ctx, 'v1', '0 2048 thin /dev/mapper/pool 1');
    assert.equal(await kindOf(dm.create(ctx, 'v1', '0 2048 thin /dev/mapper/pool 1')), 'exists');
    const pool = await dm.info(ctx, 'pool');
    assert.deepEqual(await dm.thinTable(ctx, 'v1'), { lengthSectors: 2048, poolDev: `254:${pool?.minor}`, deviceId: 1, externalOrigin: undefined });
    assert.deepEqual(await dm.thinStatus(ctx, 'v1'), { lengthSectors: 2048, mappedSectors: 0, highestMappedSector: undefined, fail: false });
    assert.equal(pool?.openCount, 1, 'the thin device holds the pool open');
    assert.deepEqual([...(await dm.thinTableAll(ctx)).keys()], ['v1']);
    assert.equal((await kindOf(dm.thinStatus(ctx, 'pool'))), 'invalid');
  });

  it('writes allocate pool blocks; rewriting an owned block does not', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    dm.write('v1', MiB);
    assert.equal((await dm.poolStatus(ctx, 'pool')).usedDataBlocks, 16);
    dm.write('v1', MiB);
    assert.equal((await dm.poolStatus(ctx, 'pool')).usedDataBlocks, 16);
    dm.write('v1', 1, 10 * MiB);
    const s = await dm.thinStatus(ctx, 'v1');
    assert.equal(s.mappedSectors, 17 * 128);
    assert.equal(s.highestMappedSector, (10 * MiB) / 512 + 127);
    assert.equal((await dm.thinStatusAll(ctx)).get('v1')?.mappedSectors, 17 * 128);
    assert.throws(() => dm.write('v1', 1, 2097152 * 512), /outside v1/);
  });

  it('a snapshot shares blocks; writing to either side copies on write', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'origin', 1);
    dm.write('origin', 4 * BLOCK);
    await dm.suspend(ctx, 'origin');
    await dm.message(ctx, 'pool', 'create_snap 2 1');
    await dm.resume(ctx, 'origin');
    const used = async (): Promise<number> => (await dm.poolStatus(ctx, 'pool')).usedDataBlocks;
    assert.equal(await used(), 4, 'a snapshot takes no new blocks');
    await thin(dm, 'snap', 2);
    assert.equal((await dm.thinStatus(ctx, 'snap')).mappedSectors, 4 * 128);
    dm.write('snap', BLOCK);
    assert.equal(await used(), 5);
    dm.write('origin', BLOCK, BLOCK);
    assert.equal(await used(), 6);
    dm.write('origin', BLOCK, BLOCK);
    assert.equal(await used(), 6, 'the copy is owned now');
    await dm.remove(ctx, 'origin');
    await dm.message(ctx, 'pool', 'delete 1');
    assert.equal(await used(), 4, 'deleting the origin frees only what the snapshot does not share');
    assert.deepEqual(dm.violations, []);
  });

  it('records a snapshot of an active, unsuspended origin as a violation', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'origin', 1);
    await dm.message(ctx, 'pool', 'create_snap 2 1');
    assert.equal(dm.violations.length, 1);
    assert.match(dm.violations[0] ?? '', /create_snap 2 1/);
  });

  it('a full pool goes out_of_data_space and throws no_space; a delete or a bigger table recovers it', async () => {
    const dm = await withPool('0 1024 thin-pool /dev/m /dev/d 128 0'); // 8 blocks
    await dm.message(ctx, 'pool', 'create_thin 1');
    await dm.message(ctx, 'pool', 'create_thin 2');
    await thin(dm, 'a', 1);
    await thin(dm, 'b', 2);
    dm.write('a', 6 * BLOCK);
    assert.equal(kindOfSync(() => dm.write('b', 4 * BLOCK)), 'no_space');
    const full = await dm.poolStatus(ctx, 'pool');
    assert.deepEqual([full.mode, full.usedDataBlocks, full.totalDataBlocks], ['out_of_data_space', 8, 8]);
    await dm.message(ctx, 'pool', 'create_thin 3'); // messages still work when only data is full
    await dm.reload(ctx, 'pool', '0 2048 thin-pool /dev/m /dev/d 128 0');
    await dm.suspend(ctx, 'pool');
    await dm.resume(ctx, 'pool');
    const grown = await dm.poolStatus(ctx, 'pool');
    assert.deepEqual([grown.mode, grown.totalDataBlocks], ['rw', 16]);
    dm.setPoolMode('pool', 'out_of_data_space');
    await dm.remove(ctx, 'a');
    await dm.message(ctx, 'pool', 'delete 1');
    assert.equal((await dm.poolStatus(ctx, 'pool')).mode, 'rw');
    await dm.reload(ctx, 'pool', '0 1024 thin-pool /dev/m /dev/d 128 0');
    assert.equal(await kindOf(dm.resume(ctx, 'pool')), 'invalid', 'a pool cannot shrink');
  });

  it('reload stores an inactive table that resume makes live (growing a volume)', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1, 2048);
    await dm.reload(ctx, 'v1', '0 4096 thin /dev/mapper/pool 1');
    assert.equal((await dm.info(ctx, 'v1'))?.inactiveTable, true);
    assert.equal((await dm.thinStatus(ctx, 'v1')).lengthSectors, 2048);
    assert.equal(dm.sizeOf('/dev/mapper/v1'), 2048 * 512);
    await dm.suspend(ctx, 'v1');
    assert.equal((await dm.info(ctx, 'v1'))?.suspended, true);
    assert.throws(() => dm.write('v1', 1), /v1 is suspended/);
    await dm.resume(ctx, 'v1');
    await dm.suspend(ctx, 'pool');
    assert.throws(() => dm.write('v1', 1), /pool of v1 is suspended/);
    await dm.resume(ctx, 'pool');
    dm.write('v1', 1);
    const info = await dm.info(ctx, 'v1');
    assert.deepEqual([info?.suspended, info?.inactiveTable], [false, false]);
    assert.equal((await dm.thinStatus(ctx, 'v1')).lengthSectors, 4096);
    assert.equal(dm.sizeOf('/dev/mapper/v1'), 4096 * 512);
    assert.equal(await kindOf(dm.reload(ctx, 'nope', '0 8 zero')), 'not_found');
    assert.equal(await kindOf(dm.suspend(ctx, 'nope')), 'not_found');
  });
});

describe('FakeDeviceMapper removal and the block device model', () => {
  it('remove is busy while open, not_found when missing; a pool is busy while thins use it', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    dm.adjustOpen('/dev/mapper/v1', 1);
    assert.equal((await dm.info(ctx, 'v1'))?.openCount, 1);
    assert.equal(await kindOf(dm.remove(ctx, 'v1')), 'busy');
    assert.equal(await kindOf(dm.remove(ctx, 'pool')), 'busy');
    dm.adjustOpen('/dev/mapper/v1', -1);
    await dm.remove(ctx, 'v1');
    assert.equal(await kindOf(dm.remove(ctx, 'v1')), 'not_found');
    assert.equal(dm.sizeOf('/dev/mapper/v1'), undefined);
    assert.equal(await dm.info(ctx, 'v1'), undefined);
    assert.throws(() => dm.adjustOpen('/dev/mapper/v1', 1), /no device-mapper device/);
    await dm.remove(ctx, 'pool');
  });

  it('--deferred succeeds and the device goes with its last holder', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    dm.adjustOpen('/dev/mapper/v1', 1);
    await dm.remove(ctx, 'v1', { deferred: true });
    assert.ok(await dm.info(ctx, 'v1'));
    dm.adjustOpen('/dev/mapper/v1', -1);
    assert.equal(await dm.info(ctx, 'v1'), undefined);
  });

  it('--force swaps in an error table, releasing the thin id, and still fails busy', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'v1', 1);
    dm.adjustOpen('/dev/mapper/v1', 1);
    assert.equal(await kindOf(dm.remove(ctx, 'v1', { force: true, retry: true })), 'busy');
    assert.match(dm.tableLine('v1'), /^0 2097152 error/);
    await dm.message(ctx, 'pool', 'delete 1');
    assert.deepEqual(dm.ops.at(-2), { op: 'remove', args: ['--retry', '--force', 'v1'] });
  });

  it('hands out the lowest free minor, as the kernel does', async () => {
    const dm = new FakeDeviceMapper();
    await dm.create(ctx, 'a', '0 8 zero');
    await dm.create(ctx, 'b', '0 8 zero');
    await dm.remove(ctx, 'a');
    await dm.create(ctx, 'c', '0 8 zero', { uuid: 'U-c', readOnly: true });
    const c = await dm.info(ctx, 'c');
    assert.deepEqual([c?.minor, c?.uuid, c?.readOnly], [0, 'U-c', true]);
    assert.deepEqual((await dm.infoAll(ctx)).map((i) => i.name).sort(), ['b', 'c']);
    assert.equal(await kindOf(dm.create(ctx, 'd', '0 8 zero', { uuid: 'U-c' })), 'exists');
  });

  it('a reboot drops every device but the pool metadata survives re-creation', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await dm.message(ctx, 'pool', 'set_transaction_id 0 1');
    await thin(dm, 'v1', 1);
    dm.write('v1', BLOCK);
    dm.simulateReboot();
    assert.deepEqual(await dm.infoAll(ctx), []);
    await dm.create(ctx, 'pool', POOL_TABLE);
    assert.deepEqual(dm.metadataThinIds('pool'), [1]);
    const s = await dm.poolStatus(ctx, 'pool');
    assert.deepEqual([s.transactionId, s.usedDataBlocks], [1, 1]);
    assert.equal(await kindOf(dm.create(ctx, 'pool2', POOL_TABLE)), 'busy', 'one pool per metadata device');
  });
});

describe('FakeDeviceMapper faults, log and context', () => {
  it("'before' faults leave no trace; 'after' faults apply the operation then throw", async () => {
    const dm = await withPool();
    const boom = new DmError('busy', 'injected');
    dm.inject({ op: 'message', match: /create_thin 1/, when: 'before', error: boom });
    await assert.rejects(dm.message(ctx, 'pool', 'create_thin 1'), boom);
    assert.deepEqual(dm.metadataThinIds('pool'), []);
    dm.inject({ op: 'message', match: /create_thin 1/, when: 'after', error: new Error('crash') });
    await assert.rejects(dm.message(ctx, 'pool', 'create_thin 1'), /crash/);
    assert.deepEqual(dm.metadataThinIds('pool'), [1]);
  });

  it('faults are one-shot by default, repeat `times`, and only hit matching calls', async () => {
    const dm = await withPool();
    dm.inject({ op: 'message', match: /^pool create_thin/, error: new Error('x'), times: 2 });
    await dm.message(ctx, 'pool', 'set_transaction_id 0 1');
    await assert.rejects(dm.message(ctx, 'pool', 'create_thin 1'));
    await assert.rejects(dm.message(ctx, 'pool', 'create_thin 1'));
    await dm.message(ctx, 'pool', 'create_thin 1');
    dm.inject({ op: 'write', error: new Error('eio') });
    await thin(dm, 'v1', 1);
    assert.throws(() => dm.write('v1', 1), /eio/);
  });

  it('logs every call in order, so tests can check suspend → create_snap → resume', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    await thin(dm, 'o', 1);
    dm.ops.length = 0;
    await dm.suspend(ctx, 'o', { noFlush: true });
    await dm.message(ctx, 'pool', 'create_snap 2 1');
    await dm.resume(ctx, 'o');
    assert.deepEqual(dm.ops, [
      { op: 'suspend', args: ['--noflush', 'o'] },
      { op: 'message', args: ['pool', 'create_snap 2 1'] },
      { op: 'resume', args: ['o'] },
    ]);
  });

  it('a cancelled or expired context fails with timeout and changes nothing', async () => {
    const dm = await withPool();
    const ac = new AbortController();
    ac.abort();
    assert.equal(await kindOf(dm.message({ signal: ac.signal }, 'pool', 'create_thin 1')), 'timeout');
    assert.equal(await kindOf(dm.message({ deadline: Date.now() - 1 }, 'pool', 'create_thin 1')), 'timeout');
    assert.deepEqual(dm.metadataThinIds('pool'), []);
  });

  it('fails with the stderr and errno dmsetup would have shown', async () => {
    const dm = await withPool();
    await dm.message(ctx, 'pool', 'create_thin 1');
    const err = await dm.message(ctx, 'pool', 'create_thin 1').then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DmError);
    assert.equal(err.errno, 'EEXIST');
    assert.equal(err.stderr, 'device-mapper: message ioctl on pool  failed: File exists\nCommand failed.');
    assert.equal(dm.devicePath('v'), '/dev/mapper/v');
  });
});
