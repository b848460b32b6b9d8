/**
 * The node service against requests that aim at what is not its own: mounts it did not make,
 * files and directories of the node's users, paths outside its roots. Every refusal must leave
 * the mount table and the files exactly as they were.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VolumeCapability__Output } from '../../../src/csi/generated/csi/v1/VolumeCapability.ts';
import { nodeTargets } from '../../../src/node/targets.ts';
import { codeOf } from '../../support/csi-client.ts';
import { createVolumeReq, nodeExpandReq, publishReq, stageReq, statsReq, unpublishReq, unstageReq, type Fields } from '../../support/requests.ts';
import { blockCap, ctx, fakeDriver, GiB, mountCap, type FakeDriver, type FakeDriverOptions } from '../support/fake-driver.ts';

const message = async (p: Promise<unknown>): Promise<string> => {
  try { await p; } catch (err) { return (err as Error).message; }
  return '';
};
const NO_VOL = 'vol-00000000000000000000000000000000';
const PROC = { target: '/proc', source: 'proc', fsType: 'proc', majorMinor: '0:22' };

describe('Node service: only what is its own', () => {
  let fd: FakeDriver;
  let staging: string;
  let target: string;
  let user: string;
  const N = () => fd.driver.node;
  const createVol = async (name: string, cap: VolumeCapability__Output = mountCap()) => (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [cap], capacity_range: { required_bytes: GiB, limit_bytes: 0 } }))).volume!.volume_id!;
  const stage = (id: string, o: Fields<'NodeStageVolume'> = {}) => N().NodeStageVolume(ctx, stageReq({ volume_id: id, staging_target_path: staging, volume_capability: mountCap(), ...o }));
  const unstage = (id: string, path = staging) => N().NodeUnstageVolume(ctx, unstageReq(id, path));
  const publish = (id: string, o: Fields<'NodePublishVolume'> = {}) => N().NodePublishVolume(ctx, publishReq({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap(), ...o }));
  const unpublish = (id: string, path = target) => N().NodeUnpublishVolume(ctx, unpublishReq(id, path));
  const stats = (id: string, path: string) => N().NodeGetVolumeStats(ctx, statsReq(id, path));
  const expand = (id: string, path: string, required = 0) => N().NodeExpandVolume(ctx, nodeExpandReq({ volume_id: id, volume_path: path, capacity_range: { required_bytes: required, limit_bytes: 0 } }));
  const ops = (name: string) => fd.mounter.ops.filter((o) => o.op === name).length;
  const table = () => JSON.stringify(fd.mounter.mounts());

  const setup = async (opts: FakeDriverOptions = {}) => {
    fd = await fakeDriver(opts);
    staging = join(fd.dir, 'kubelet', 'staging', 'pv1');
    target = join(fd.dir, 'kubelet', 'pods', 'uid', 'volumes', 'pv1', 'mount');
    user = join(fd.dir, 'user');
    await mkdir(join(user, 'data'), { recursive: true });
    await writeFile(join(user, 'data', 'passwd'), 'root:x:0:0\n');
    await writeFile(join(user, 'notes.txt'), 'mine\n');
    fd.mounter.addNodeMount(PROC);
    fd.mounter.addNodeMount({ target: join(user, 'tmpfs'), source: 'tmpfs', fsType: 'tmpfs', majorMinor: '0:40' });
  };
  beforeEach(() => setup());
  afterEach(() => fd.cleanup());

  describe('unmounts only the volume\'s own mounts', () => {
    it('an unknown volume is NOT_FOUND with nothing unmounted, wherever it points', async () => {
      const before = table();
      for (const p of ['/proc', join(user, 'tmpfs'), target]) assert.equal(await codeOf(unpublish(NO_VOL, p)), 'NOT_FOUND', p);
      assert.equal(await codeOf(unstage(NO_VOL, '/proc')), 'NOT_FOUND');
      assert.equal(ops('unmount'), 0);
      assert.equal(table(), before);
    });
    it('a real volume aimed at a foreign mount is FAILED_PRECONDITION naming it; the mount stays', async () => {
      const id = await createVol('v');
      await stage(id);
      const before = table();
      const msg = await message(unpublish(id, '/proc'));
      assert.match(msg, /\/proc holds proc \(proc, device 0:22\)/);
      assert.equal(await codeOf(unpublish(id, '/proc')), 'FAILED_PRECONDITION');
      assert.equal(await codeOf(unstage(id, join(user, 'tmpfs'))), 'FAILED_PRECONDITION');
      assert.equal(ops('unmount'), 0);
      assert.equal(table(), before);
      assert.equal((await fd.dm.info(ctx, `dmthin-${id}`))?.live, true, 'a refused unstage does not deactivate');
    });
    it('another volume\'s mount is foreign too', async () => {
      const a = await createVol('a');
      const b = await createVol('b');
      await stage(a);
      await publish(a);
      const before = table();
      assert.equal(await codeOf(unpublish(b)), 'FAILED_PRECONDITION');
      assert.equal(await codeOf(unstage(b)), 'FAILED_PRECONDITION');
      assert.equal(table(), before);
    });
    it('a foreign mount stacked on the volume\'s own is left, and so is the volume\'s beneath it', async () => {
      const id = await createVol('v');
      await stage(id);
      fd.mounter.addNodeMount({ target: staging, source: 'tmpfs', fsType: 'tmpfs', majorMinor: '0:41' });
      const before = table();
      assert.equal(await codeOf(unstage(id)), 'FAILED_PRECONDITION');
      assert.equal(table(), before);
    });
    it('unstage where the volume is not staged leaves it active while it is mounted or open elsewhere', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      await mkdir(join(user, 'empty'));
      assert.match(await message(unstage(id, join(user, 'empty'))), /still mounted at .*staging\/pv1, .*mount/);
      assert.equal(await codeOf(unstage(id, join(user, 'empty'))), 'FAILED_PRECONDITION');
      const b = await createVol('b', blockCap());
      await stage(b, { volume_capability: blockCap() });
      fd.dm.adjustOpen(`/dev/mapper/dmthin-${b}`, 1); // a pod holds the device open
      assert.equal(await codeOf(unstage(b, join(user, 'empty'))), 'FAILED_PRECONDITION');
      for (const v of [id, b]) assert.equal((await fd.dm.info(ctx, `dmthin-${v}`))?.live, true);
      assert.equal((await fd.store.getDevice(id))?.error, undefined, 'nothing was tried that failed');
    });
    it('a block volume still published is not deactivated by an unstage, even when no process has it open', async () => {
      const b = await createVol('b', blockCap());
      const bt = join(fd.dir, 'kubelet', 'dev', 'b');
      await stage(b, { volume_capability: blockCap() });
      await publish(b, { volume_capability: blockCap(), target_path: bt });
      await mkdir(join(user, 'empty'));
      assert.match(await message(unstage(b, join(user, 'empty'))), /still published at .*dev\/b/);
      assert.equal((await fd.dm.info(ctx, `dmthin-${b}`))?.live, true);
      await unpublish(b, bt);
      await unstage(b);
      assert.equal(await fd.dm.info(ctx, `dmthin-${b}`), undefined);
    });
    it('a real volume at a user\'s file or directory it never published is OK and removes nothing', async () => {
      const id = await createVol('v');
      await stage(id);
      await mkdir(join(user, 'empty'));
      await writeFile(join(user, 'zero'), '');
      for (const p of [join(user, 'notes.txt'), join(user, 'data'), join(user, 'empty'), join(user, 'zero')]) assert.equal(await codeOf(unpublish(id, p)), 'OK', p);
      assert.equal(await readFile(join(user, 'notes.txt'), 'utf8'), 'mine\n');
      assert.equal(await readFile(join(user, 'data', 'passwd'), 'utf8'), 'root:x:0:0\n');
      assert.ok((await stat(join(user, 'empty'))).isDirectory());
      assert.ok((await stat(join(user, 'zero'))).isFile());
    });
  });

  describe('never mounts over data', () => {
    it('stage refuses a non-empty directory, a file, a symlink or a foreign mount point, before touching the device', async () => {
      const id = await createVol('v');
      await symlink(join(user, 'data'), join(user, 'link'));
      const before = table();
      for (const p of [join(user, 'data'), join(user, 'notes.txt'), join(user, 'link'), join(user, 'tmpfs'), '/proc']) {
        assert.equal(await codeOf(stage(id, { staging_target_path: p })), 'FAILED_PRECONDITION', p);
      }
      assert.equal(ops('mkfs') + ops('mount'), 0);
      assert.equal(await fd.dm.info(ctx, `dmthin-${id}`), undefined, 'not even activated');
      assert.equal(table(), before);
      assert.deepEqual(await readdir(join(user, 'data')), ['passwd']);
    });
    it('publish refuses the same, and a directory for block or a file for mount access', async () => {
      const id = await createVol('v');
      await stage(id);
      const b = await createVol('b', blockCap());
      await stage(b, { volume_capability: blockCap(), staging_target_path: join(fd.dir, 'kubelet', 'bstaging') });
      await mkdir(join(user, 'empty'));
      await writeFile(join(user, 'zero'), '');
      const before = table();
      for (const p of [join(user, 'data'), join(user, 'notes.txt'), join(user, 'tmpfs'), '/proc', join(user, 'zero')]) {
        assert.equal(await codeOf(publish(id, { target_path: p })), 'FAILED_PRECONDITION', p);
      }
      for (const p of [join(user, 'notes.txt'), join(user, 'empty'), '/proc']) {
        assert.equal(await codeOf(publish(b, { target_path: p, volume_capability: blockCap(), staging_target_path: join(fd.dir, 'kubelet', 'bstaging') })), 'FAILED_PRECONDITION', p);
      }
      assert.equal(ops('bindMount'), 0);
      assert.equal(table(), before);
      assert.equal(await readFile(join(user, 'notes.txt'), 'utf8'), 'mine\n');
    });
  });

  describe('removes only what publish made', () => {
    it('a target the kubelet made is used and left; one publish made is removed', async () => {
      const id = await createVol('v');
      await stage(id);
      await mkdir(target, { recursive: true });
      await publish(id);
      await unpublish(id);
      assert.ok((await stat(target)).isDirectory(), 'the kubelet\'s directory stays');
      assert.equal(fd.mounter.mounts().filter((m) => m.target === target).length, 0);
      const mine = join(fd.dir, 'kubelet', 'pods', 'uid2', 'mount');
      await publish(id, { target_path: mine });
      await unpublish(id, mine);
      assert.equal(await lstat(mine).catch(() => undefined), undefined);
    });
    it('a made directory or file that gained content is left', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      await writeFile(join(target, 'left-behind'), 'x'); // under the fake's bind: the directory itself
      await unpublish(id);
      assert.deepEqual(await readdir(target), ['left-behind']);
      const b = await createVol('b', blockCap());
      const bt = join(fd.dir, 'kubelet', 'dev', 'b');
      await stage(b, { volume_capability: blockCap() });
      await publish(b, { volume_capability: blockCap(), target_path: bt });
      await writeFile(bt, 'data');
      await unpublish(b, bt);
      assert.equal(await readFile(bt, 'utf8'), 'data');
    });
    it('the record survives a restart; a publish that died after its mkdir is cleaned up by unpublish', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      await fd.restart();
      await unpublish(id);
      assert.equal(await lstat(target).catch(() => undefined), undefined);
      // The state a publish killed right after its mkdir leaves: the record, an empty directory, no mount.
      await nodeTargets(fd.dir).record({ target, kind: 'dir', volumeId: id });
      await mkdir(target, { recursive: true });
      await fd.restart();
      await unpublish(id);
      assert.equal(await lstat(target).catch(() => undefined), undefined);
    });
    it('the record is written before the target is made: with no record possible, nothing is made', async () => {
      const id = await createVol('v');
      await stage(id);
      await writeFile(join(fd.dir, 'node-targets'), 'in the way');
      assert.notEqual(await codeOf(publish(id)), 'OK');
      assert.equal(await lstat(target).catch(() => undefined), undefined);
      assert.equal(ops('bindMount'), 0);
    });
    it('a failed bind removes the directory publish made', async () => {
      const id = await createVol('v');
      await stage(id);
      fd.mounter.inject({ op: 'bindMount', error: 'EIO' });
      assert.equal(await codeOf(publish(id)), 'INTERNAL');
      assert.equal(await lstat(target).catch(() => undefined), undefined);
    });
  });

  describe('stats and expand only where the volume is', () => {
    it('NOT_FOUND at a path where it is not mounted, before any size check', async () => {
      const id = await createVol('v');
      await stage(id);
      await publish(id);
      for (const p of [join(user, 'data'), '/proc', join(user, 'tmpfs'), 'relative/missing']) {
        assert.equal(await codeOf(stats(id, p)), 'NOT_FOUND', p);
        assert.equal(await codeOf(expand(id, p, 100 * GiB)), 'NOT_FOUND', p);
      }
      assert.equal(ops('fsStats') + ops('growFs'), 0);
      assert.equal(await codeOf(stats(id, staging)), 'OK');
      assert.equal(await codeOf(stats(id, target)), 'OK');
      assert.equal(await codeOf(expand(id, target, 100 * GiB)), 'OUT_OF_RANGE');
    });
    it('block: only where the device is published', async () => {
      const b = await createVol('b', blockCap());
      const bt = join(fd.dir, 'kubelet', 'dev', 'b');
      await stage(b, { volume_capability: blockCap() });
      assert.equal(await codeOf(stats(b, bt)), 'NOT_FOUND');
      await mkdir(join(fd.dir, 'kubelet', 'dev'), { recursive: true });
      await writeFile(bt, '');
      assert.equal(await codeOf(stats(b, bt)), 'NOT_FOUND', 'an empty file is not the device');
      await publish(b, { volume_capability: blockCap(), target_path: bt });
      assert.equal(await codeOf(stats(b, bt)), 'OK');
      assert.equal(await codeOf(expand(b, bt)), 'OK');
      assert.equal(await codeOf(stats(b, '/proc')), 'NOT_FOUND');
    });
  });

  describe('required fields before any lookup', () => {
    it('a missing field is INVALID_ARGUMENT even for an unknown volume', async () => {
      assert.equal(await codeOf(stats(NO_VOL, '')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(expand(NO_VOL, '')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stats('', target)), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(unstage(NO_VOL, '')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(unpublish(NO_VOL, '')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stage(NO_VOL, { volume_capability: null })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(publish(NO_VOL, { volume_capability: null })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stats(NO_VOL, 'a\0b')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(stats(NO_VOL, 'relative')), 'NOT_FOUND');
      assert.equal(await codeOf(unpublish(NO_VOL, '/tmp/../proc')), 'INVALID_ARGUMENT');
    });
  });

  describe('--node-path-root', () => {
    it('staging and target paths must land under a root once symlinks above them are followed', async () => {
      const base = await mkdtemp(join(tmpdir(), 'dmthin-roots-'));
      try {
        const root = join(base, 'kubelet');
        await mkdir(join(root, 'pods'), { recursive: true });
        await mkdir(join(base, 'elsewhere'));
        await symlink(join(base, 'elsewhere'), join(root, 'escape'));
        await fd.cleanup();
        await setup({ nodePathRoots: [root] });
        const id = await createVol('v');
        const inside = join(root, 'staging', 'pv1');
        for (const p of [join(base, 'outside'), join(root, 'escape', 'pv1'), join(root, 'escape', 'deeper', 'pv1'), '/proc']) {
          assert.equal(await codeOf(stage(id, { staging_target_path: p })), 'INVALID_ARGUMENT', p);
          assert.equal(await codeOf(unstage(id, p)), 'INVALID_ARGUMENT', p);
          assert.equal(await codeOf(unpublish(id, p)), 'INVALID_ARGUMENT', p);
        }
        assert.equal(ops('mkfs') + ops('mount') + ops('unmount'), 0);
        assert.deepEqual(await readdir(join(base, 'elsewhere')), []);
        await stage(id, { staging_target_path: inside });
        await publish(id, { staging_target_path: inside, target_path: join(root, 'pods', 'uid', 'mount') });
        assert.equal(await codeOf(publish(id, { staging_target_path: inside, target_path: join(root, 'escape', 'mount') })), 'INVALID_ARGUMENT');
        await unpublish(id, join(root, 'pods', 'uid', 'mount'));
        await unstage(id, inside);
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });
  });
});
