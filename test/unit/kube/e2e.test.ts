// The PVC-like flow of the "done means", with fakes under the agent: create, stage,
// publish, snapshot, restore on the same node, expand (controller + node), unpublish,
// unstage, delete; the controller and the node meet only through custom resources.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VolumeCapability__Output } from '../../../src/csi/generated/csi/v1/VolumeCapability.ts';
import { deleteSnapshotReq, deleteVolumeReq, expandReq, nodeExpandReq, publishReq, snapshotReq, stageReq, unpublishReq, unstageReq } from '../../support/requests.ts';
import { createReq, deadline, MiB, world, type World } from './harness.ts';

const mountCap: VolumeCapability__Output = { mount: { fs_type: 'ext4', mount_flags: [], volume_mount_group: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' };

describe('kube mode: PVC-like flow end to end (fakes)', () => {
  let w: World;
  let dir: string;
  before(async () => {
    w = await world();
    await w.startNode('n1');
    dir = await mkdtemp(join(tmpdir(), 'dmthin-kube-'));
  });
  after(async () => {
    await w.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('create → stage → publish → snapshot → restore → expand → unpublish → unstage → delete', async () => {
    const node = w.nodes.get('n1')!.node;
    const m = w.mounters.get('n1')!;
    const ctx = deadline();
    const staging = (id: string) => join(dir, 'staging', id);
    const target = (id: string) => join(dir, 'pods', id, 'mount');
    const stage = (id: string) => node.NodeStageVolume(ctx, stageReq({ volume_id: id, staging_target_path: staging(id), volume_capability: mountCap }));
    const publish = (id: string) => node.NodePublishVolume(ctx, publishReq({ volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: mountCap }));
    const unpublish = (id: string) => node.NodeUnpublishVolume(ctx, unpublishReq(id, target(id)));
    const unstage = (id: string) => node.NodeUnstageVolume(ctx, unstageReq(id, staging(id)));

    const vol = (await w.controller.CreateVolume(ctx, createReq('pvc-a', { node: 'n1' }))).volume!.volume_id!;
    await stage(vol);
    await publish(vol);
    assert.ok(m.mounts().some((x) => x.target === target(vol)));
    assert.equal((w.d.object('thinvolumes.dmthin.csi.io', vol) as { status: { state: string } }).status.state, 'Activated');

    const snap = (await w.controller.CreateSnapshot(ctx, snapshotReq('snap-a', vol))).snapshot!.snapshot_id!;
    const restored = (await w.controller.CreateVolume(ctx, createReq('pvc-b', { node: 'n1', snapshot: snap }))).volume!.volume_id!;
    await stage(restored);
    await publish(restored);
    assert.equal(m.filesystem(`/dev/mapper/${(await w.nodes.get('n1')!.store.getDevice(restored))!.dmName}`)?.fsType, 'ext4', 'the restored volume carries the snapshot\'s filesystem');

    const exp = await w.controller.ControllerExpandVolume(ctx, expandReq({ volume_id: vol, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 }, volume_capability: mountCap }));
    assert.equal(exp.node_expansion_required, true);
    const nodeExp = await node.NodeExpandVolume(ctx, nodeExpandReq({ volume_id: vol, volume_path: target(vol), staging_target_path: staging(vol), capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 }, volume_capability: mountCap }));
    assert.equal(Number(nodeExp.capacity_bytes), 128 * MiB);

    for (const id of [restored, vol]) {
      await unpublish(id);
      await unstage(id);
    }
    await w.controller.DeleteSnapshot(ctx, deleteSnapshotReq(snap));
    await w.controller.DeleteVolume(ctx, deleteVolumeReq(restored));
    await w.controller.DeleteVolume(ctx, deleteVolumeReq(vol));
    assert.deepEqual(w.d.objects('thinvolumes.dmthin.csi.io'), []);
    assert.deepEqual(w.d.objects('thinsnapshots.dmthin.csi.io'), []);
    assert.deepEqual(await w.nodes.get('n1')!.store.listDevices(), []);
  });
});
