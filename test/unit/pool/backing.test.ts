import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ThinPoolStatus } from '../../../src/devmapper/types.ts';
import { allocateMetadataFile, backedFreeBytes, backingShortfall, readBacking, realBackingFs, type BackingReading } from '../../../src/pool/backing.ts';
import { allocatableBytes, assessPool, freezeRefusal } from '../../../src/pool/health.ts';
import { FakeBackingFs } from '../../doubles/system/fake-backing.ts';
import { createVolumeReq, request } from '../../support/requests.ts';
import { ctx, fakeDriver, GiB, MiB, mountCap, POOL, type FakeDriver } from '../support/fake-driver.ts';

const status = (o: Partial<ThinPoolStatus> = {}): ThinPoolStatus => ({
  lengthSectors: 1000 * 128, transactionId: 3, usedMetadataBlocks: 10, totalMetadataBlocks: 1000,
  usedDataBlocks: 100, totalDataBlocks: 1000, mode: 'rw', discardPassdown: true, errorIfNoSpace: false,
  needsCheck: false, metadataLowWatermark: undefined, ...o,
});
const BLOCK = 65536;
const reading = (o: Partial<BackingReading> = {}): BackingReading => ({
  dataFile: '/var/lib/p/data.img', growBytes: 0, fsAvailableBytes: 0, fileBytes: 1000 * BLOCK, fileAllocatedBytes: 100 * BLOCK,
  metadataUnallocatedBytes: 0, ...o,
});

describe('backedFreeBytes and assessPool with a backing file', () => {
  it('a device-backed pool keeps its own free space', () => {
    const h = assessPool(status(), 128);
    assert.equal(h.dataFreeBytes, 900 * BLOCK);
    assert.equal(allocatableBytes(h, 2), 1800 * BLOCK);
  });
  it('the smaller of the pool\'s free space and what the data file can still grow by', () => {
    assert.equal(backedFreeBytes(900 * BLOCK, 100 * BLOCK, reading({ growBytes: 300 * BLOCK })), 300 * BLOCK);
    assert.equal(backedFreeBytes(900 * BLOCK, 100 * BLOCK, reading({ growBytes: 2000 * BLOCK })), 900 * BLOCK);
  });
  it('pool blocks in use but not yet written through (partly written blocks) are set against the file\'s room', () => {
    // 100 blocks used, only 40 of them in the file: 60 more will come out of the 300 the file may still take.
    assert.equal(backedFreeBytes(900 * BLOCK, 100 * BLOCK, reading({ growBytes: 300 * BLOCK, fileAllocatedBytes: 40 * BLOCK })), 240 * BLOCK);
    assert.equal(backedFreeBytes(900 * BLOCK, 100 * BLOCK, reading({ growBytes: 50 * BLOCK, fileAllocatedBytes: 40 * BLOCK })), 0);
  });
  it('capacity is what the filesystem holds times the ratio; a data file that can grow little more is low on space first', () => {
    const roomy = assessPool(status(), 128, undefined, reading({ growBytes: 300 * BLOCK, fsAvailableBytes: 300 * BLOCK }));
    assert.equal(roomy.condition, 'ok');
    assert.equal(allocatableBytes(roomy, 4), 1200 * BLOCK);
    // 100 used of the 104 the file can hold: 96%, over the 95% data threshold, long before the pool's own 10%.
    const tight = assessPool(status(), 128, undefined, reading({ growBytes: 4 * BLOCK, fsAvailableBytes: 4 * BLOCK }));
    assert.equal(tight.condition, 'low_space');
    assert.equal(tight.writable, false);
    assert.equal(allocatableBytes(tight, 4), 0);
    assert.match(tight.reasons.join(), /96\.2% used of what its data file can hold .*filesystem under \/var\/lib\/p\/data\.img has 262144 bytes available/);
  });
  it('a metadata file with holes is low on space: a metadata write could meet ENOSPC', () => {
    const h = assessPool(status(), 128, undefined, reading({ growBytes: 300 * BLOCK, metadataFile: '/m.img', metadataUnallocatedBytes: 4096 }));
    assert.equal(h.condition, 'low_space');
    assert.match(h.reasons.join(), /metadata file \/m\.img has 4096 bytes unallocated/);
  });
  it('backingShortfall says when the filesystem cannot hold the whole data file', () => {
    assert.equal(backingShortfall(reading({ fsAvailableBytes: 900 * BLOCK })), undefined);
    assert.match(backingShortfall(reading({ fsAvailableBytes: 899 * BLOCK }))!, /has 58916864 bytes available, but the pool's sparse data file \(65536000 bytes\) may still grow by 58982400/);
    assert.equal(backingShortfall(undefined), undefined);
  });
  it('freezeRefusal: RESOURCE_EXHAUSTED on a full pool or a full backing filesystem, FAILED_PRECONDITION on one to repair, nothing otherwise', () => {
    const code = (h: ReturnType<typeof assessPool>) => (freezeRefusal('p', h, 'a snapshot') as { code?: number } | undefined)?.code;
    assert.equal(code(assessPool(status(), 128)), undefined);
    assert.equal(code(assessPool(status({ usedDataBlocks: 960 }), 128)), undefined, 'low on space is no freeze');
    assert.equal(code(assessPool(status({ mode: 'out_of_data_space' }), 128)), 8);
    assert.equal(code(assessPool(status({ usedDataBlocks: 1000 }), 128)), 8, 'full, before the kernel switched modes');
    assert.equal(code(assessPool(status(), 128, undefined, reading())), 8, 'the data file cannot grow');
    for (const o of [{ mode: 'ro' as const }, { needsCheck: true }, { mode: 'fail' as const }]) assert.equal(code(assessPool(status(o), 128)), 9);
  });
});

describe('readBacking over the fake filesystem', () => {
  it('no loop device behind the data device: device-backed', async () => {
    assert.equal(await readBacking(new FakeBackingFs(GiB), '/dev/sdb'), undefined);
  });
  it('the configured files win over what the loop devices record (a path from another mount namespace)', async () => {
    const fs = new FakeBackingFs(GiB);
    fs.addFile('/host/p/data.img', 512 * MiB, '7:1');
    fs.addFile('/p/data.img', 256 * MiB);
    fs.addFile('/p/meta.img', 8 * MiB);
    const r = (await readBacking(fs, '7:1', '7:0', { data: '/p/data.img', metadata: '/p/meta.img' }))!;
    assert.deepEqual([r.dataFile, r.metadataFile, r.fileBytes, r.metadataUnallocatedBytes], ['/p/data.img', '/p/meta.img', 256 * MiB, 8 * MiB]);
  });
  it('the data file grows by no more than the filesystem has, nor past its own length', async () => {
    const fs = new FakeBackingFs(100 * MiB);
    fs.addFile('/p/data.img', 512 * MiB, '7:1');
    fs.addFile('/p/meta.img', 8 * MiB, '7:0');
    await fs.allocate(ctx, '/p/meta.img');
    const r = (await readBacking(fs, '7:1', '7:0'))!;
    assert.deepEqual({ grow: r.growBytes, fs: r.fsAvailableBytes, meta: r.metadataUnallocatedBytes, file: r.metadataFile }, { grow: 92 * MiB, fs: 92 * MiB, meta: 0, file: '/p/meta.img' });
    fs.free = GiB;
    fs.write('/p/data.img', 500 * MiB);
    assert.equal((await readBacking(fs, '7:1'))!.growBytes, 12 * MiB);
    fs.write('/p/data.img', GiB); // a file stops at its own length
    assert.equal((await readBacking(fs, '7:1'))!.growBytes, 0);
    fs.addFile('/p/other', GiB);
    assert.throws(() => fs.write('/p/other', GiB), /ENOSPC/);
  });
});

describe('allocating the metadata file', () => {
  let dir = '';
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'dmthin-backing-')); });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  it('the real filesystem (fallocate through the FFI) allocates a sparse file in full, keeps its data, and reads its usage', async () => {
    const f = join(dir, 'metadata.img');
    await writeFile(f, 'thin');
    await truncate(f, 4 * MiB);
    assert.ok((await realBackingFs.usage(f)).allocatedBytes < 4 * MiB);
    await realBackingFs.allocate(ctx, f);
    assert.deepEqual(await realBackingFs.usage(f), { lengthBytes: 4 * MiB, allocatedBytes: 4 * MiB });
    assert.equal((await stat(f)).size, 4 * MiB);
    assert.equal((await readFile(f)).subarray(0, 4).toString(), 'thin');
    assert.ok(await realBackingFs.availableBytes(f) > 0);
    assert.equal(await realBackingFs.loopFile(f), undefined, 'a regular file is no loop device');
  });
  it('a fresh metadata file the filesystem cannot hold refuses the pool (FAILED_PRECONDITION) and is removed; an adopted one only warns', async () => {
    const f = join(dir, 'metadata.img');
    await writeFile(f, '');
    const fs = new FakeBackingFs(MiB);
    fs.addFile(f, 8 * MiB);
    const warned: string[] = [];
    await allocateMetadataFile(ctx, fs, f, false, (m) => warned.push(m));
    assert.match(warned.join(), /no room to allocate the pool's metadata file in full/);
    await assert.rejects(allocateMetadataFile(ctx, fs, f, true, (m) => warned.push(m)), { code: 9, message: /configure a smaller --loop-metadata-size/ });
    await assert.rejects(stat(f), { code: 'ENOENT' });
    fs.free = 16 * MiB;
    await allocateMetadataFile(ctx, fs, f, true, () => assert.fail('no warning'));
    assert.equal((await fs.usage(f)).allocatedBytes, 8 * MiB);
  });
});

describe('a file-backed pool in the driver (fake kernel, fake filesystem)', () => {
  let fd: FakeDriver;
  let fs: FakeBackingFs;
  afterEach(() => fd.cleanup());
  const start = async (freeBytes: number, ratio = 1) => {
    fs = new FakeBackingFs(freeBytes + 64 * MiB);
    fs.addFile('/p/data.img', 16 * GiB, '/dev/fake-data');
    fs.addFile('/p/meta.img', 64 * MiB, '/dev/fake-meta');
    await fs.allocate(ctx, '/p/meta.img');
    fd = await fakeDriver({ backing: fs, overprovisionRatio: ratio });
  };
  const capacity = async () => Number((await fd.driver.controller.GetCapacity(ctx, request('GetCapacity'))).available_capacity);
  const createVol = (name: string, bytes: number) => fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: bytes, limit_bytes: 0 } }));

  it('GetCapacity offers what the filesystem holds (times the ratio), not the pool\'s 16 GiB, and CreateVolume agrees', async () => {
    await start(2 * GiB, 2);
    assert.equal(await capacity(), 4 * GiB);
    await assert.rejects(createVol('big', 4 * GiB + MiB), { code: 8, message: /at most 4294967296 more bytes/ });
    await createVol('fits', 3 * GiB);
    const metric = await fd.driver.metrics.registry.getSingleMetricAsString('dmthin_csi_pool_data_available_bytes');
    assert.match(metric, new RegExp(`{pool="[^"]+"} ${2 * GiB}$`));
    const offered = await fd.driver.metrics.registry.getSingleMetricAsString('dmthin_csi_pool_capacity_bytes');
    assert.match(offered, new RegExp(`{pool="[^"]+"} ${await capacity()}$`), 'the capacity gauge is what GetCapacity says');
  });
  it('as the filesystem fills (a writer, or anything else on it), capacity follows it down and the pool is low on space before it is full', async () => {
    await start(GiB, 8);
    const v = (await createVol('v', 4 * GiB)).volume!.volume_id!;
    const rec = (await fd.store.getDevice(v))!;
    await fd.driver.devices.activate(ctx, v);
    fd.dm.write(rec.dmName, 512 * MiB);
    fs.write('/p/data.img', 512 * MiB);
    assert.equal(await capacity(), 8 * 512 * MiB);
    fs.consume(500 * MiB); // 12 MiB left for the data file: 97.7% of what it can hold is used
    const h = await fd.driver.pool.health(ctx);
    assert.equal(h.condition, 'low_space', h.reasons.join());
    assert.equal(await capacity(), 0);
    await assert.rejects(createVol('w', MiB), { code: 8 });
    // A snapshot's freeze would not block on a filesystem with room left: still allowed.
    await fd.driver.controller.CreateSnapshot(ctx, request('CreateSnapshot', { name: 's1', source_volume_id: v }));
    fs.consume(12 * MiB);
    await fd.clearOps();
    await assert.rejects(fd.driver.controller.CreateSnapshot(ctx, request('CreateSnapshot', { name: 's2', source_volume_id: v })),
      { code: 8, message: /refuses a snapshot: the filesystem under its data file \/p\/data.img is full/ });
    assert.deepEqual(fd.dm.ops.filter((o) => o.op === 'suspend' || o.op === 'message'), [], 'refused before any suspend');
    await assert.rejects(fd.driver.controller.ControllerExpandVolume(ctx, request('ControllerExpandVolume', { volume_id: v, capacity_range: { required_bytes: 8 * GiB, limit_bytes: 0 } })),
      { code: 8, message: /growing/ });
    assert.equal((await fd.store.getDevice(v))!.sizeBytes, 4 * GiB, 'the refused expand recorded nothing');
    // Writes needing new blocks fail now: the volume is reported abnormal, with the reason.
    const got = await fd.driver.controller.ControllerGetVolume(ctx, request('ControllerGetVolume', { volume_id: v }));
    assert.equal(got.status?.volume_condition?.abnormal, true);
    assert.match(got.status?.volume_condition?.message ?? '', /filesystem under \/p\/data\.img has 0 bytes available/);
    fs.consume(-64 * MiB);
    const again = await fd.driver.controller.ControllerGetVolume(ctx, request('ControllerGetVolume', { volume_id: v }));
    assert.equal(again.status?.volume_condition?.abnormal, false, 'room again: normal');
  });
});
