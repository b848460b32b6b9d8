// Fail fast instead of freezing (issue 24): on a pool out of data space, read-only or needing a
// check, what would suspend a live volume (a snapshot, a group snapshot, a resize of a live
// volume) is refused at once with its code, before any record, suspend or pool message.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createVolumeReq, expandReq, groupSnapshotReq, nodeExpandReq, snapshotReq, stageReq, unstageReq } from '../../support/requests.ts';
import { ctx, fakeDriver, GiB, MiB, mountCap, POOL, type FakeDriver } from '../support/fake-driver.ts';

describe('a full or broken pool refuses what would freeze a volume', () => {
  let fd: FakeDriver;
  let vol = '';
  beforeEach(async () => {
    fd = await fakeDriver();
    vol = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: 'v', volume_capabilities: [mountCap()], capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 } }))).volume!.volume_id!;
    await fd.driver.devices.activate(ctx, vol); // live: a snapshot or a resize would suspend it
  });
  afterEach(() => fd.cleanup());

  const attempts = () => [
    fd.driver.controller.CreateSnapshot(ctx, snapshotReq('s', vol)),
    fd.driver.groupController!.CreateVolumeGroupSnapshot(ctx, groupSnapshotReq('g', [vol])),
    fd.driver.controller.ControllerExpandVolume(ctx, expandReq({ volume_id: vol, capacity_range: { required_bytes: GiB, limit_bytes: 0 } })),
  ];

  for (const [what, set, code] of [
    ['out of data space', (f: FakeDriver) => f.dm.setPoolMode(POOL, 'out_of_data_space'), 8],
    ['read-only', (f: FakeDriver) => f.dm.setPoolMode(POOL, 'ro'), 9],
    ['needs_check', (f: FakeDriver) => f.dm.setNeedsCheck(POOL, true), 9],
  ] as const) {
    it(`${what}: CreateSnapshot, CreateVolumeGroupSnapshot and ControllerExpandVolume answer ${code === 8 ? 'RESOURCE_EXHAUSTED' : 'FAILED_PRECONDITION'} before touching anything`, async () => {
      await fd.clearOps(); // the pool's last reading (30 s old at most) was healthy: the refusal reads afresh
      const before = await fd.store.listDevices();
      set(fd);
      const results = await Promise.allSettled(attempts());
      assert.deepEqual(results.map((r) => r.status === 'rejected' && (r.reason as { code: number }).code), [code, code, code], results.map((r) => String((r as PromiseRejectedResult).reason)).join('\n'));
      for (const r of results) assert.match(String((r as PromiseRejectedResult).reason), code === 8 ? /out of data space/ : /until it is repaired/);
      assert.deepEqual(fd.dm.ops.map((o) => o.op).filter((o) => ['suspend', 'resume', 'reload', 'message'].includes(o)), []);
      assert.deepEqual(await fd.store.listDevices(), before);
      assert.deepEqual(await fd.store.listGroups(), []);
    });
  }

  it('a healthy pool still takes them', async () => {
    const results = await Promise.allSettled(attempts());
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled']);
  });
});

describe('on the node, a full pool refuses formatting and growing a filesystem, not mounting one', () => {
  let fd: FakeDriver;
  beforeEach(async () => { fd = await fakeDriver(); });
  afterEach(() => fd.cleanup());
  const createVol = async (name: string) => (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 } }))).volume!.volume_id!;
  const staging = (id: string) => join(fd.dir, 'staging', id);
  const stage = (id: string) => fd.driver.node.NodeStageVolume(ctx, stageReq({ volume_id: id, staging_target_path: staging(id), volume_capability: mountCap() }));

  it('NodeStageVolume of a new volume (mkfs) or of one to grow is RESOURCE_EXHAUSTED; one to mount as it is still stages; NodeExpandVolume\'s grow is refused', async () => {
    const [fresh, plain, bigger, online] = [await createVol('fresh'), await createVol('plain'), await createVol('bigger'), await createVol('online')];
    for (const id of [plain, bigger]) {
      await stage(id);
      await fd.driver.node.NodeUnstageVolume(ctx, unstageReq(id, staging(id)));
    }
    await stage(online);
    for (const id of [bigger, online]) await fd.driver.controller.ControllerExpandVolume(ctx, expandReq({ volume_id: id, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 } }));
    fd.dm.setPoolMode(POOL, 'out_of_data_space');
    const mkfs = fd.mounter.ops.filter((o) => o.op === 'mkfs').length;
    await assert.rejects(stage(fresh), { code: 8, message: /formatting .* would freeze/ });
    assert.equal(fd.mounter.ops.filter((o) => o.op === 'mkfs').length, mkfs, 'nothing formatted');
    await assert.rejects(stage(bigger), { code: 8, message: /growing the filesystem of/ });
    assert.deepEqual(await fd.mounter.mountsOf(ctx, `/dev/mapper/dmthin-${bigger}`), [], 'refused before the mount');
    await stage(plain); // mounting writes only blocks the volume has
    await assert.rejects(fd.driver.node.NodeExpandVolume(ctx, nodeExpandReq({ volume_id: online, volume_path: staging(online), capacity_range: { required_bytes: 0, limit_bytes: 0 }, volume_capability: mountCap() })),
      { code: 8, message: /growing the filesystem of/ });
    assert.equal(fd.mounter.filesystem(`/dev/mapper/dmthin-${online}`)?.sizeBytes, 64 * MiB, 'not grown');
  });
});
