// The sysfs shortcuts for "is this dm device live": a node that leads to a live disk says yes;
// a trusted listing of the dm disks without the name says no; anything else asks dmsetup.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DmsetupDeviceMapper } from '../../../src/devmapper/dmsetup.ts';
import { dmNamesInSysfs, liveSectorsInSysfs, MAX_DM_SCAN } from '../../../src/devmapper/sysfs.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { FakeDmsetup } from '../../doubles/devmapper/fake-dmsetup.ts';

describe('liveSectorsInSysfs', () => {
  const sys = mkdtempSync(join(tmpdir(), 'dmthin-sysfs-'));
  after(() => rmSync(sys, { recursive: true, force: true }));
  const device = (dev: string, name: string, sectors: number) => {
    mkdirSync(join(sys, 'dev/block', dev, 'dm'), { recursive: true });
    writeFileSync(join(sys, 'dev/block', dev, 'dm/name'), `${name}\n`);
    writeFileSync(join(sys, 'dev/block', dev, 'size'), `${sectors}\n`);
  };
  it('is the size of the named device with a table, and undefined for anything else', async () => {
    device('253:4', 'vol-a', 2097152);
    device('253:5', 'vol-b', 0); // created, no live table
    assert.equal(await liveSectorsInSysfs('253:4', 'vol-a', sys), 2097152);
    assert.equal(await liveSectorsInSysfs('253:4', 'vol-other', sys), undefined, 'the node leads to another device');
    assert.equal(await liveSectorsInSysfs('253:5', 'vol-b', sys), undefined, 'no live table');
    assert.equal(await liveSectorsInSysfs('253:9', 'vol-c', sys), undefined, 'no such device');
  });
});

/** A sysfs tree with `block/dm-N/dm/name` for each name (and one disk that is not dm). */
function sysfsWithDisks(names: string[]): string {
  const sys = mkdtempSync(join(tmpdir(), 'dmthin-sysfs-'));
  mkdirSync(join(sys, 'block/sda'), { recursive: true });
  names.forEach((name, i) => {
    mkdirSync(join(sys, `block/dm-${i}/dm`), { recursive: true });
    writeFileSync(join(sys, `block/dm-${i}/dm/name`), `${name}\n`);
  });
  return sys;
}

describe('dmNamesInSysfs', () => {
  const trees: string[] = [];
  const tree = (names: string[]) => { const t = sysfsWithDisks(names); trees.push(t); return t; };
  after(() => { for (const t of trees) rmSync(t, { recursive: true, force: true }); });
  it('lists the names of the dm disks only', async () => {
    assert.deepEqual(await dmNamesInSysfs(tree(['pool', 'vol-a'])), new Set(['pool', 'vol-a']));
  });
  it('skips a disk gone since the listing', async () => {
    const t = tree(['pool', 'vol-a']);
    rmSync(join(t, 'block/dm-1/dm/name'));
    assert.deepEqual(await dmNamesInSysfs(t), new Set(['pool']));
  });
  it('gives no listing it cannot trust: no block directory, no dm disk at all, or more than a scan is worth', async () => {
    assert.equal(await dmNamesInSysfs(join(tree([]), 'nowhere')), undefined);
    assert.equal(await dmNamesInSysfs(tree([])), undefined, 'a running pool is a dm disk, so none means this is not the sysfs of that kernel');
    assert.equal(await dmNamesInSysfs(tree(Array.from({ length: MAX_DM_SCAN + 1 }, (_, i) => `v${i}`))), undefined);
    assert.equal((await dmNamesInSysfs(tree(Array.from({ length: MAX_DM_SCAN }, (_, i) => `v${i}`))))?.size, MAX_DM_SCAN);
  });
});

describe('DmsetupDeviceMapper.isLive', () => {
  const fake = new FakeDmsetup();
  const listed = sysfsWithDisks(['pool', 'vol-x']);
  after(() => { fake.cleanup(); rmSync(listed, { recursive: true, force: true }); });
  it('says no without dmsetup when no dm disk carries the name', async () => {
    const dm = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, sysfs: listed });
    const before = fake.calls().length;
    assert.equal(await dm.isLive(ctx, 'vol-snap'), false);
    assert.equal(fake.calls().length, before, 'no dmsetup run');
  });
  it('asks dmsetup when a dm disk carries the name but its node is missing', async () => {
    const dm = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, sysfs: listed });
    fake.respond({ stdout: 'vol-x|253|7|L--w|1|1|0|\n' });
    assert.equal(await dm.isLive(ctx, 'vol-x'), true);
    assert.equal(fake.lastArgv()[0], 'info');
  });
  it('asks dmsetup when sysfs can show neither (here: no node, no listing)', async () => {
    const dm = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, sysfs: '/nowhere' });
    fake.respond({ stdout: 'vol-x|253|7|L--w|1|1|0|\n' });
    assert.equal(await dm.isLive(ctx, 'vol-x'), true);
    assert.equal(fake.lastArgv()[0], 'info');
    fake.respond({ stdout: 'vol-y|253|8|---w|0|0|0|\n' });
    assert.equal(await dm.isLive(ctx, 'vol-y'), false, 'no live table');
    fake.respond({ code: 1, stderr: 'Device does not exist.\nCommand failed.\n' });
    assert.equal(await dm.isLive(ctx, 'vol-z'), false, 'no such device');
  });
});

describe('DmsetupDeviceMapper.liveThinSectors', () => {
  const fake = new FakeDmsetup();
  after(() => fake.cleanup());
  it('reads the live table when sysfs cannot show the device (here: no node); no table is undefined', async () => {
    const dm = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, sysfs: '/nowhere' });
    fake.respond({ stdout: '0 4194304 thin 253:0 7\n' });
    assert.equal(await dm.liveThinSectors(ctx, 'vol-x'), 4194304);
    assert.deepEqual(fake.lastArgv(), ['table', 'vol-x']);
    fake.respond({ code: 1, stderr: 'device-mapper: table ioctl on vol-z  failed: No such device or address\nCommand failed.\n' });
    assert.equal(await dm.liveThinSectors(ctx, 'vol-z'), undefined, 'no such device');
    fake.respond({ code: 1, stderr: 'device-mapper: table ioctl on vol-w  failed: Input/output error\nCommand failed.\n' });
    await assert.rejects(dm.liveThinSectors(ctx, 'vol-w'), (e: { kind?: string }) => e.kind !== 'not_found', 'any other failure is the caller\'s to see');
  });
});
