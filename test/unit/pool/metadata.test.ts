// Reconcile against the pool's metadata (thin_ls on a metadata snapshot): devices deleted
// behind the driver's back, inactive devices no record knows, and snapshots held by others or
// left held by a crash. Over the fake dm, whose thinIds models the snapshot read.
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { blockDevicePath, parseThinLs, thinIdsFromMetadata } from '../../../src/devmapper/thin-ls.ts';
import type { DeviceMapper } from '../../../src/devmapper/types.ts';
import type { NewDevice } from '../../../src/pool/devices.ts';
import { ctx, fakeDriver, GiB, POOL, type FakeDriver } from '../support/fake-driver.ts';
import { recorded } from '../devmapper/fixtures.ts';

const spec = (id: string): NewDevice => ({ id, dmName: `dm-${id}`, kind: 'volume', sizeBytes: GiB, meta: {} });
const heldRoot = (fd: FakeDriver) => fd.dm.statusLine(POOL).split(' ')[6];

describe('thin_ls output and metadata device paths', () => {
  it('parses the recorded thin_ls --no-headers -o DEV output', () => {
    assert.deepEqual(parseThinLs(recorded('thin-ls-dev.txt')), [0, 1, 7]);
    assert.deepEqual(parseThinLs(''), []);
  });
  it('refuses anything that is not a thin id, quoting it', () => {
    assert.throws(() => parseThinLs('DEV\n1\n'), /"DEV" is not a thin id/);
  });
  it('resolves a major:minor through sysfs, and passes a path through', async () => {
    const sys = await mkdtemp(join(tmpdir(), 'dmthin-sys-'));
    try {
      await mkdir(join(sys, 'dev/block/7:1'), { recursive: true });
      await writeFile(join(sys, 'dev/block/7:1/uevent'), 'MAJOR=7\nMINOR=1\nDEVNAME=loop1\nDEVTYPE=disk\n');
      assert.equal(await blockDevicePath('7:1', sys), '/dev/loop1');
      assert.equal(await blockDevicePath('/dev/vdb', sys), '/dev/vdb');
      await assert.rejects(blockDevicePath('7:9', sys), /ENOENT/);
    } finally {
      await rm(sys, { recursive: true, force: true });
    }
  });
});

describe('thinIdsFromMetadata', () => {
  it('a metadata device it cannot resolve makes the check unavailable, before any snapshot is reserved', async () => {
    const sent: string[] = [];
    const dm = { message: async (_c: unknown, _p: string, m: string) => { sent.push(m); } } as unknown as DeviceMapper;
    const r = await thinIdsFromMetadata(ctx, dm, POOL, '9999:9999');
    assert.ok('unavailable' in r && /cannot find the metadata device of test-pool/.test(r.unavailable));
    assert.deepEqual(sent, []);
  });
});

describe('reconcile against the pool metadata', () => {
  let fd: FakeDriver;
  afterEach(() => fd.cleanup());

  it('an inactive device deleted behind the driver\'s back turns Faulty with the reason, and stays so', async () => {
    fd = await fakeDriver();
    const v = await fd.driver.devices.create(ctx, spec('v'));
    await fd.driver.devices.create(ctx, spec('w'));
    await fd.dm.message(ctx, POOL, `delete ${v.deviceId}`);
    let d = await fd.restart();
    assert.deepEqual(d.startup.faulty, [], 'a start does not read the metadata');
    assert.equal(d.startup.metadata, 'skipped');
    let r = await d.checkPool(ctx);
    assert.equal(r.metadata, 'checked');
    assert.equal(r.faulty.length, 1);
    assert.equal(r.faulty[0]!.id, 'v');
    assert.match(r.faulty[0]!.error, new RegExp(`thin device ${v.deviceId} is not in the metadata of pool ${POOL}`));
    const rec = (await fd.store.getDevice('v'))!;
    assert.equal(rec.state, 'Faulty');
    assert.equal(rec.faultyFrom, 'Created');
    assert.equal((await fd.store.getDevice('w'))!.state, 'Created', 'the other device is untouched');
    d = await fd.restart();
    r = await d.checkPool(ctx);
    assert.deepEqual([...d.startup.repaired, ...r.repaired], [], 'a vanished device is not "repaired" back to a settled state');
    assert.equal(r.faulty[0]?.id, 'v');
    await d.devices.remove(ctx, 'v');
    assert.equal(await fd.store.getDevice('v'), undefined, 'a vanished device can still be deleted');
  });

  it('an inactive thin device no record knows is an orphan, and its id is not reused', async () => {
    fd = await fakeDriver();
    await fd.dm.message(ctx, POOL, 'create_thin 0');
    const d = await fd.restart();
    assert.deepEqual(d.startup.orphans, [], 'an inactive device is only seen in the metadata');
    assert.deepEqual((await d.checkPool(ctx)).orphans, [{ deviceId: 0 }]);
    assert.notEqual((await d.devices.create(ctx, spec('v'))).deviceId, 0);
    assert.equal(heldRoot(fd), '-', 'the metadata snapshot is released');
  });

  it('a metadata snapshot held by someone else is left alone; the rest of reconcile still runs', async () => {
    fd = await fakeDriver();
    const v = await fd.driver.devices.create(ctx, spec('v'));
    await fd.dm.message(ctx, POOL, `delete ${v.deviceId}`);
    await fd.dm.message(ctx, POOL, 'reserve_metadata_snap');
    const r = await (await fd.restart()).checkPool(ctx);
    assert.equal(r.metadata, 'unavailable');
    assert.deepEqual(r.faulty, [], 'not judged without the metadata');
    assert.notEqual(heldRoot(fd), '-', 'their snapshot is still held');
    await fd.dm.message(ctx, POOL, 'release_metadata_snap');
  });

  it('a metadata snapshot a crash left held is ours, and is released at the next start\'s attach', async () => {
    fd = await fakeDriver();
    await fd.dm.message(ctx, POOL, 'reserve_metadata_snap'); // what the crashed call had done
    await fd.store.updatePool((p) => ({ ...p!, metadataSnapHeld: true }));
    const d = await fd.restart();
    assert.equal(heldRoot(fd), '-', 'the attach releases it: a backup\'s SnapshotMetadata call must not find it held');
    assert.equal((await fd.store.getPool())?.metadataSnapHeld, false);
    const r = await d.checkPool(ctx);
    assert.equal(heldRoot(fd), '-');
    assert.deepEqual(r.faulty, []);
  });
});
