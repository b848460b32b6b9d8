import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VolumeCapability__Output } from '../../../src/csi/generated/csi/v1/VolumeCapability.ts';
import type { NodeService } from '../../../src/node/service.ts';
import { codeOf } from '../../support/csi-client.ts';
import { createVolumeReq, expandReq, nodeExpandReq, publishReq, snapshotReq, stageReq, statsReq, unpublishReq, unstageReq, type Fields } from '../../support/requests.ts';
import { blockCap, ctx, fakeDriver, GiB, mountCap, type FakeDriver } from '../support/fake-driver.ts';

const NO_VOL = 'vol-00000000000000000000000000000000';

describe('Node service', () => {
  let fd: FakeDriver;
  let n: NodeService;
  let staging: string;
  let target: string;
  const createVol = async (name: string, cap: VolumeCapability__Output = mountCap(), size = GiB) => (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [cap], capacity_range: { required_bytes: size, limit_bytes: 0 } }))).volume!.volume_id!;
  const stage = (id: string, o: Fields<'NodeStageVolume'> = {}) => n.NodeStageVolume(ctx, stageReq({ volume_id: id, staging_target_path: staging, volume_capability: mountCap(), ...o }));
  const unstage = (id: string, path = staging) => n.NodeUnstageVolume(ctx, unstageReq(id, path));
  const publish = (id: string, o: Fields<'NodePublishVolume'> = {}) => n.NodePublishVolume(ctx, publishReq({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap(), ...o }));
  const unpublish = (id: string, path = target) => n.NodeUnpublishVolume(ctx, unpublishReq(id, path));
  const dev = (id: string) => `/dev/mapper/dmthin-${id}`;
  const ops = (name: string) => fd.mounter.ops.filter((o) => o.op === name).length;

  beforeEach(async () => {
    fd = await fakeDriver();
    n = fd.driver.node;
    staging = join(fd.dir, 'staging', 'pv1');
    target = join(fd.dir, 'pods', 'uid', 'volumes', 'pv1', 'mount');
  });
  afterEach(() => fd.cleanup());

  describe('NodeStageVolume', () => {
    it('activates, makes a filesystem only when there is none, mounts; a second call changes nothing', async () => {
      const id = await createVol('v');
      await stage(id);
      assert.equal(ops('mkfs'), 1);
      assert.equal(fd.mounter.filesystem(dev(id))?.fsType, 'ext4');
      assert.ok(fd.mounter.mounts().some((m) => m.target === staging));
      await stage(id);
      assert.equal(ops('mkfs'), 1);
      assert.equal(ops('mount'), 1);
      await unstage(id);
      await stage(id);
      assert.equal(ops('mkfs'), 1, 'an existing filesystem is never reformatted');
      assert.equal(fd.mounter.mounts().filter((m) => m.target === staging).length, 1);
    });
    it('ext4 on a device never written gets inode tables marked zeroed; one holding data, or xfs, does not', async () => {
      const mkfsArgs = () => fd.mounter.ops.filter((o) => o.op === 'mkfs').map((o) => o.args.slice(1).join(' '));
      const fresh = await createVol('fresh');
      await stage(fresh);
      await unstage(fresh);
      const written = await createVol('written');
      await fd.driver.devices.activate(ctx, written);
      fd.dm.write(`dmthin-${written}`, 4096, 64 * 1024 * 1024); // data, but no filesystem
      await stage(written);
      await unstage(written);
      const x = await createVol('x', mountCap('xfs'));
      fd.dm.ops.length = 0;
      await stage(x, { volume_capability: mountCap('xfs') });
      assert.deepEqual(mkfsArgs(), ['ext4 zeroed', 'ext4', 'xfs']);
    });
    it('a device never written goes to mkfs without blkid, ext4 or xfs; one holding data is asked of blkid first', async () => {
      const probed = () => fd.mounter.ops.filter((o) => o.op === 'detectFs').map((o) => o.args[0]);
      const fresh = await createVol('fresh');
      const freshXfs = await createVol('fresh-xfs', mountCap('xfs'));
      await stage(fresh);
      await unstage(fresh);
      await stage(freshXfs, { volume_capability: mountCap('xfs') });
      await unstage(freshXfs);
      assert.deepEqual(probed(), [], 'nothing on a device with no block mapped for blkid to find');
      assert.equal(ops('mkfs'), 2);
      const written = await createVol('written', mountCap('xfs'));
      await fd.driver.devices.activate(ctx, written);
      fd.dm.write(`dmthin-${written}`, 1024 * 1024, 0);
      await stage(written, { volume_capability: mountCap('xfs') });
      assert.deepEqual(probed(), [dev(written)]);
      assert.equal(fd.mounter.filesystem(dev(written))?.fsType, 'xfs');
    });
    it('a device holding another filesystem is refused, never formatted over', async () => {
      const id = await createVol('other');
      await fd.driver.devices.activate(ctx, id);
      fd.dm.write(`dmthin-${id}`, 1024 * 1024, 0);
      fd.mounter.addForeignFilesystem(dev(id), 'btrfs');
      assert.equal(await codeOf(stage(id)), 'FAILED_PRECONDITION');
      assert.equal(ops('mkfs'), 0);
      assert.equal(ops('detectFs'), 1);
      assert.equal(fd.mounter.filesystem(dev(id)), undefined);
    });
    it('when the kernel cannot say whether the device was written, blkid is asked', async () => {
      const id = await createVol('unknown');
      await fd.driver.devices.activate(ctx, id);
      fd.mounter.addForeignFilesystem(dev(id), 'swap');
      fd.dm.inject({ op: 'thinStatus', error: new Error('EIO') });
      assert.equal(await codeOf(stage(id)), 'FAILED_PRECONDITION');
      assert.equal(ops('detectFs'), 1);
      assert.equal(ops('mkfs'), 0);
    });
    it('staged already but with an incompatible capability is ALREADY_EXISTS', async () => {
      const id = await createVol('v');
      await stage(id);
      assert.equal(await codeOf(stage(id, { volume_capability: mountCap('ext4', 'SINGLE_NODE_READER_ONLY') })), 'ALREADY_EXISTS');
      assert.equal(await codeOf(stage(id, { volume_capability: mountCap('xfs') })), 'ALREADY_EXISTS');
      assert.equal(await codeOf(stage(id, { volume_capability: mountCap('') })), 'OK');
    });
    it('a read-only mount flag is idempotent for stage and publish', async () => {
      const id = await createVol('v');
      const cap = mountCap('ext4', 'SINGLE_NODE_WRITER', ['ro']);
      await stage(id, { volume_capability: cap });
      await stage(id, { volume_capability: cap });
      await publish(id, { volume_capability: cap });
      await publish(id, { volume_capability: cap });
      assert.ok(fd.mounter.mounts().find((m) => m.target === target)?.options.includes('ro'));
    });
    it('a filesystem of another type is FAILED_PRECONDITION', async () => {
      const id = await createVol('v');
      await stage(id);
      await unstage(id);
      assert.equal(await codeOf(stage(id, { volume_capability: mountCap('xfs') })), 'FAILED_PRECONDITION');
    });
    it('block access activates only', async () => {
      const id = await createVol('b', blockCap());
      await stage(id, { volume_capability: blockCap() });
      assert.equal(ops('mkfs'), 0);
      assert.equal(ops('mount'), 0);
      assert.equal((await fd.dm.info(ctx, `dmthin-${id}`))?.live, true);
      assert.equal(await codeOf(stage(id)), 'FAILED_PRECONDITION');
    });
    it('another device at the staging path is FAILED_PRECONDITION: it is not this volume, so it is left alone', async () => {
      const a = await createVol('a');
      const b = await createVol('b');
      await stage(a);
      assert.equal(await codeOf(stage(b)), 'FAILED_PRECONDITION');
    });
    it('bad paths are INVALID_ARGUMENT, an unknown volume NOT_FOUND, missing fields INVALID_ARGUMENT', async () => {
      const id = await createVol('v');
      assert.equal(await codeOf(stage(id, { staging_target_path: 'relative/path' })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage(id, { staging_target_path: `${fd.dir}/../etc` })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage(id, { staging_target_path: '' })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage(id, { volume_capability: null })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage('')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage(NO_VOL)), 'NOT_FOUND');
      const snap = await fd.driver.controller.CreateSnapshot(ctx, snapshotReq('snap', id));
      assert.equal(await codeOf(stage(snap.snapshot!.snapshot_id!)), 'NOT_FOUND');
      assert.equal(await codeOf(stage(id, { volume_capability: mountCap('ext4', 'MULTI_NODE_MULTI_WRITER') })), 'INVALID_ARGUMENT');
    });
  });

  describe('NodeUnstageVolume', () => {
    it('unmounts and deactivates; repeating is OK; an unknown volume NOT_FOUND', async () => {
      const id = await createVol('v');
      await stage(id);
      await unstage(id);
      assert.equal(fd.mounter.mounts().length, 0);
      assert.equal(await fd.dm.info(ctx, `dmthin-${id}`), undefined);
      assert.equal((await fd.store.getDevice(id))?.state, 'Deactivated');
      await unstage(id);
      assert.equal(await codeOf(unstage(NO_VOL)), 'NOT_FOUND');
      assert.equal(await codeOf(unstage(id, 'rel')), 'INVALID_ARGUMENT');
    });
  });

  describe('NodePublishVolume', () => {
    it('without staging_target_path is FAILED_PRECONDITION; before staging FAILED_PRECONDITION', async () => {
      const id = await createVol('v');
      assert.equal(await codeOf(publish(id, { staging_target_path: '' })), 'FAILED_PRECONDITION');
      assert.equal(await codeOf(publish(id)), 'FAILED_PRECONDITION');
      assert.equal(await codeOf(publish(NO_VOL)), 'NOT_FOUND');
      assert.equal(await codeOf(publish(id, { target_path: 'x/y' })), 'INVALID_ARGUMENT');
    });
    it('bind-mounts the staging dir, read-only when asked; idempotent; ro mismatch ALREADY_EXISTS', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id, { readonly: true });
      const m = fd.mounter.mounts().find((e) => e.target === target);
      assert.ok(m);
      assert.ok(m.options.includes('ro'));
      assert.ok((await stat(target)).isDirectory());
      await publish(id, { readonly: true });
      assert.equal(fd.mounter.mounts().filter((e) => e.target === target).length, 1);
      assert.equal(await codeOf(publish(id, { readonly: false })), 'ALREADY_EXISTS');
      await unpublish(id);
      assert.equal(fd.mounter.mounts().filter((e) => e.target === target).length, 0);
      assert.equal(await stat(target).catch(() => undefined), undefined);
      await unpublish(id);
    });
    it('block: binds the device onto a file target, idempotently, and unpublish removes the file', async () => {
      const id = await createVol('b', blockCap());
      await stage(id, { volume_capability: blockCap() });
      await publish(id, { volume_capability: blockCap() });
      assert.ok((await stat(target)).isFile());
      assert.equal(fd.mounter.mounts().filter((e) => e.target === target).length, 1);
      await publish(id, { volume_capability: blockCap() });
      assert.equal(fd.mounter.mounts().filter((e) => e.target === target).length, 1);
      assert.equal(await codeOf(publish(id)), 'FAILED_PRECONDITION');
      const other = await createVol('b2', blockCap());
      await stage(other, { volume_capability: blockCap() });
      assert.equal(await codeOf(publish(other, { volume_capability: blockCap() })), 'FAILED_PRECONDITION');
      await unpublish(id);
      assert.equal(await stat(target).catch(() => undefined), undefined);
    });
    it('another volume at the target is FAILED_PRECONDITION', async () => {
      const a = await createVol('a');
      const b = await createVol('b');
      await stage(a);
      await publish(a);
      const staging2 = join(fd.dir, 'staging', 'pv2');
      await stage(b, { staging_target_path: staging2 });
      assert.equal(await codeOf(publish(b, { staging_target_path: staging2 })), 'FAILED_PRECONDITION');
    });
  });

  describe('NodeUnpublishVolume', () => {
    it('an unknown volume with nothing mounted is NOT_FOUND; bad path INVALID_ARGUMENT', async () => {
      assert.equal(await codeOf(unpublish(NO_VOL)), 'NOT_FOUND');
      assert.equal(await codeOf(unpublish(NO_VOL, '../x')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(unpublish('')), 'INVALID_ARGUMENT');
    });
  });

  describe('NodeGetVolumeStats', () => {
    const stats = (id: string, path: string) => n.NodeGetVolumeStats(ctx, statsReq(id, path));
    it('reports bytes and inodes for a mount, bytes for block, NOT_FOUND for unknown volume or path', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      fd.mounter.setUsage(target, 100 * 1024 * 1024, 10);
      const s = await stats(id, target);
      assert.deepEqual(s.usage.map((u) => u.unit), ['BYTES', 'INODES']);
      assert.equal(s.usage[0]!.total, GiB);
      assert.equal(s.usage[0]!.used, 100 * 1024 * 1024);
      assert.equal(s.volume_condition.abnormal, false);
      assert.equal(await codeOf(stats(NO_VOL, target)), 'NOT_FOUND');
      assert.equal(await codeOf(stats(id, join(fd.dir, 'missing'))), 'NOT_FOUND');
      assert.equal(await codeOf(stats(id, 'rel')), 'NOT_FOUND', 'the volume is never at a relative path');
      const b = await createVol('b', blockCap());
      const bstaging = join(fd.dir, 'staging', 'b');
      await stage(b, { volume_capability: blockCap(), staging_target_path: bstaging });
      const btarget = join(fd.dir, 'pods', 'b', 'dev');
      await publish(b, { volume_capability: blockCap(), staging_target_path: bstaging, target_path: btarget });
      fd.dm.write(`dmthin-${b}`, 1024 * 1024);
      const bs = await stats(b, btarget);
      assert.deepEqual(bs.usage.map((u) => u.unit), ['BYTES']);
      assert.equal(bs.usage[0]!.total, GiB);
      assert.equal(bs.usage[0]!.used, 1024 * 1024);
    });
  });

  describe('NodeExpandVolume', () => {
    const expand = (id: string, path: string, required = 0, stagingPath = staging) => n.NodeExpandVolume(ctx, nodeExpandReq({ volume_id: id, volume_path: path, staging_target_path: stagingPath, capacity_range: { required_bytes: required, limit_bytes: 0 }, volume_capability: mountCap() }));
    it('grows the live table and the filesystem after ControllerExpandVolume', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      await fd.driver.controller.ControllerExpandVolume(ctx, expandReq({ volume_id: id, capacity_range: { required_bytes: 2 * GiB, limit_bytes: 0 } }));
      const r = await expand(id, target, 2 * GiB);
      assert.equal(r.capacity_bytes, 2 * GiB);
      assert.equal(fd.dm.sizeOf(dev(id)), 2 * GiB);
      assert.equal(fd.mounter.filesystem(dev(id))?.sizeBytes, 2 * GiB);
      assert.equal(await codeOf(expand(id, target, 3 * GiB)), 'OUT_OF_RANGE');
      assert.equal(await codeOf(expand(NO_VOL, target)), 'NOT_FOUND');
      assert.equal(await codeOf(expand(id, join(fd.dir, 'elsewhere'), 0, '')), 'NOT_FOUND');
    });
  });

  describe('NodeGetInfo and capabilities', () => {
    it('reports the node id and its topology', () => {
      const info = n.NodeGetInfo();
      assert.equal(info.node_id, 'node-1');
      assert.deepEqual(Object.values(info.accessible_topology.segments), ['node-1']);
      assert.ok(n.NodeGetCapabilities().capabilities.some((c) => c.rpc.type === 'STAGE_UNSTAGE_VOLUME'));
    });
  });
});
