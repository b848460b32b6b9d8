// Group snapshots in Kubernetes mode: a ThinGroupSnapshot and its member ThinSnapshots through
// the API server TEST DOUBLE, made by the node agent over a fake kernel in one freeze.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { groupIdFor } from '../../../src/volume/ids.ts';
import { FINALIZER, NODE_LABEL, type ThinGroupSnapshot, type ThinSnapshot } from '../../../src/kube/types.ts';
import { deleteGroupReq, deleteSnapshotReq, getGroupReq, getSnapshotReq, groupSnapshotReq, listSnapshotsReq } from '../../support/requests.ts';
import { createReq, deadline, until, world, type World } from './harness.ts';

const groupReq = (name: string, sources: string[]) => groupSnapshotReq(name, sources, { secrets: { token: 'ignored' } });

describe('kube mode: group snapshots through custom resources', () => {
  let w: World;
  const on1: string[] = [];
  let on2 = '';
  before(async () => {
    w = await world();
    await w.startNode('n1');
    await w.startNode('n2');
    for (const n of ['a', 'b']) on1.push((await w.controller.CreateVolume(deadline(), createReq(`g-${n}`, { node: 'n1' }))).volume!.volume_id!);
    on2 = (await w.controller.CreateVolume(deadline(), createReq('g-c', { node: 'n2' }))).volume!.volume_id!;
    await w.nodes.get('n1')!.devices.activate(deadline(), on1[0]!);
  });
  after(async () => { await w.close(); });

  it('makes the group and its members, owned by it, in one freeze; idempotent by name and sources', async () => {
    const res = (await w.groupController.CreateVolumeGroupSnapshot(deadline(), groupReq('grp', on1))).group_snapshot;
    assert.equal(res.ready_to_use, true);
    assert.equal(res.group_snapshot_id, groupIdFor('grp'));
    assert.deepEqual(res.snapshots!.map((s) => s.source_volume_id), on1);
    const g = w.d.object('thingroupsnapshots.dmthin.csi.io', res.group_snapshot_id!) as unknown as ThinGroupSnapshot;
    assert.equal(g.status?.state, 'Ready');
    assert.deepEqual(g.metadata.finalizers, [FINALIZER]);
    for (const s of res.snapshots!) {
      assert.equal(s.group_snapshot_id, res.group_snapshot_id);
      const m = w.d.object('thinsnapshots.dmthin.csi.io', s.snapshot_id!) as unknown as ThinSnapshot;
      assert.equal(m.spec.group, res.group_snapshot_id);
      assert.equal(m.metadata.ownerReferences?.[0]?.uid, g.metadata.uid);
      assert.equal(m.status?.state, 'Created');
    }
    const dm = w.dms.get('n1')!;
    assert.deepEqual(dm.violations, []);
    assert.equal((await dm.info(deadline(), (await w.nodes.get('n1')!.store.getDevice(on1[0]!))!.dmName))?.suspended, false);
    const again = (await w.groupController.CreateVolumeGroupSnapshot(deadline(), groupReq('grp', [...on1].reverse()))).group_snapshot;
    assert.deepEqual(again.snapshots!.map((s) => s.snapshot_id).sort(), res.snapshots!.map((s) => s.snapshot_id).sort());
    await assert.rejects(w.groupController.CreateVolumeGroupSnapshot(deadline(), groupReq('grp', [on1[0]!])), (e: { code: number }) => e.code === Code.ALREADY_EXISTS);
  });

  it('refuses sources on two nodes with INVALID_ARGUMENT and creates nothing', async () => {
    await assert.rejects(w.groupController.CreateVolumeGroupSnapshot(deadline(), groupReq('spread', [on1[0]!, on2])),
      (e: { code: number; message: string }) => e.code === Code.INVALID_ARGUMENT && /one node/.test(e.message) && e.message.includes('n2'));
    assert.equal(w.d.object('thingroupsnapshots.dmthin.csi.io', groupIdFor('spread')), undefined);
  });

  it('a group object whose members do not pair with its sources is refused in status, nothing made', async () => {
    // The CRD cannot say this (kube-apiserver 1.24's CEL estimator refuses the rule), so the agent does.
    const acts = () => w.dms.get('n1')!.ops.filter((o) => o.op === 'message' || o.op === 'suspend').length;
    // The earlier group's transaction-id stamp is deferred; let it land so only this object's acts count.
    await w.nodes.get('n1')!.devices.pool.settled();
    const before = acts();
    w.d.seed('thingroupsnapshots.dmthin.csi.io', { metadata: { name: 'odd', labels: { [NODE_LABEL]: 'n1' } },
      spec: { nodeName: 'n1', csiName: 'odd', sourceVolumes: on1, members: ['snap-only-one'] } });
    const cr = () => w.d.object('thingroupsnapshots.dmthin.csi.io', 'odd') as unknown as ThinGroupSnapshot;
    await until(() => cr()?.status?.message !== undefined, 'the failure in status');
    assert.match(cr().status!.message!, /1 members for 2 source volumes/);
    assert.equal(cr().status!.readyToUse, undefined);
    assert.deepEqual(cr().metadata.finalizers ?? [], []);
    assert.equal(acts(), before, 'no suspend, no pool message');
    w.d.remove('thingroupsnapshots.dmthin.csi.io', 'odd');
  });

  it('members are listed and restorable, refused alone; the group delete removes every device and object', async () => {
    const res = (await w.groupController.CreateVolumeGroupSnapshot(deadline(), groupReq('grp', on1))).group_snapshot;
    const ids = res.snapshots!.map((s) => s.snapshot_id!);
    const listed = await w.controller.ListSnapshots(deadline(), listSnapshotsReq({ snapshot_id: ids[0]! }));
    assert.equal(listed.entries?.[0]?.snapshot?.group_snapshot_id, res.group_snapshot_id);
    const restored = await w.controller.CreateVolume(deadline(), createReq('g-r', { node: 'n1', snapshot: ids[1] }));
    assert.equal(restored.volume!.content_source?.snapshot?.snapshot_id, ids[1]);
    await assert.rejects(w.controller.DeleteSnapshot(deadline(), deleteSnapshotReq(ids[0]!)), (e: { code: number }) => e.code === Code.INVALID_ARGUMENT);
    const got = await w.groupController.GetVolumeGroupSnapshot(deadline(), getGroupReq(res.group_snapshot_id!, ids));
    assert.equal(got.group_snapshot.ready_to_use, true);
    const member = (await w.controller.GetSnapshot(deadline(), getSnapshotReq(ids[0]!))).snapshot;
    assert.deepEqual([member.snapshot_id, member.group_snapshot_id, member.source_volume_id, member.ready_to_use], [ids[0], res.group_snapshot_id, on1[0], true]);
    await w.groupController.DeleteVolumeGroupSnapshot(deadline(), deleteGroupReq(res.group_snapshot_id!, ids));
    await w.groupController.DeleteVolumeGroupSnapshot(deadline(), deleteGroupReq(res.group_snapshot_id!, ids));
    assert.equal(w.d.object('thingroupsnapshots.dmthin.csi.io', res.group_snapshot_id!), undefined);
    for (const id of ids) assert.equal(w.d.object('thinsnapshots.dmthin.csi.io', id), undefined);
    await assert.rejects(w.controller.GetSnapshot(deadline(), getSnapshotReq(ids[0]!)), (e: { code: number }) => e.code === Code.NOT_FOUND);
    const store = w.nodes.get('n1')!.store;
    assert.deepEqual(await store.listGroups(), []);
    await until(async () => (await store.listDevices()).filter((r) => r.kind === 'snapshot').length === 0, 'member devices gone');
    assert.equal((await store.getDevice(restored.volume!.volume_id!))?.state, 'Created');
  });

  it('an unknown group id: Get answers NOT_FOUND and Delete OK, even with no snapshot_ids', async () => {
    await assert.rejects(w.groupController.GetVolumeGroupSnapshot(deadline(), getGroupReq(groupIdFor('never'), [])), (e: { code: number }) => e.code === Code.NOT_FOUND);
    assert.deepEqual(await w.groupController.DeleteVolumeGroupSnapshot(deadline(), deleteGroupReq(groupIdFor('never'), [])), {});
  });
});
