// A PVC-like flow through the custom resources: the controller (KubeBackend) and a node agent
// talk only through the API server TEST DOUBLE, with a fake kernel under the agent.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { DmError } from '../../../src/devmapper/types.ts';
import { FINALIZER, NODE_LABEL, type ThinPoolCr, type ThinVolume } from '../../../src/kube/types.ts';
import { capacityReq, deleteVolumeReq, expandReq, listSnapshotsReq, listVolumesReq, snapshotReq } from '../../support/requests.ts';
import { createReq, deadline, MiB, POOL, until, world, type World } from './harness.ts';
import { sleep } from '../../../src/system/delay.ts';

describe('kube mode: volume lifecycle through custom resources', () => {
  let w: World;
  before(async () => {
    w = await world();
    await w.startNode('n1');
    await w.startNode('n2');
  });
  after(async () => { await w.close(); });

  it('CreateVolume makes a ThinVolume that the agent turns into a device', async () => {
    const res = await w.controller.CreateVolume(deadline(), createReq('pvc-1', { node: 'n1' }));
    const id = res.volume!.volume_id!;
    assert.equal(res.volume!.capacity_bytes, 64 * MiB);
    assert.deepEqual(res.volume!.accessible_topology, [{ segments: { 'dmthin.csi.io/node': 'n1' } }]);
    const cr = w.d.object('thinvolumes.dmthin.csi.io', id) as unknown as ThinVolume;
    assert.equal(cr.metadata.labels?.[NODE_LABEL], 'n1');
    assert.deepEqual(cr.metadata.finalizers, [FINALIZER]);
    assert.equal(cr.status?.state, 'Created');
    assert.equal(cr.spec.csiName, 'pvc-1');
    const rec = await w.nodes.get('n1')!.store.getDevice(id);
    assert.equal(rec?.dmName, `dmthin-${cr.metadata.uid}`);
    // Idempotent: the same name finds the same CR.
    const again = await w.controller.CreateVolume(deadline(), createReq('pvc-1', { node: 'n1' }));
    assert.equal(again.volume!.volume_id!, id);
    const listed = await w.controller.ListVolumes(deadline(), listVolumesReq());
    assert.deepEqual(listed.entries.map((e) => e.volume!.volume_id!), [id]);
  });

  it('stages the volume on its node through the CR-backed store', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-1', { node: 'n1' }))).volume!.volume_id!;
    const kn = w.nodes.get('n1')!;
    const path = await kn.devices.activate(deadline(), id);
    assert.match(path, /dmthin-/);
    await until(async () => (await kn.store.getDevice(id))?.state === 'Activated', 'Activated in the CR');
    await kn.devices.deactivate(deadline(), id);
  });

  it('snapshots, restores on the same node, refuses another node', async () => {
    const vol = (await w.controller.CreateVolume(deadline(), createReq('pvc-2', { node: 'n1' }))).volume!.volume_id!;
    const snap = (await w.controller.CreateSnapshot(deadline(), snapshotReq('snap-a', vol))).snapshot!;
    assert.equal(snap.ready_to_use, true);
    assert.equal(snap.size_bytes, 64 * MiB);
    const restored = await w.controller.CreateVolume(deadline(), createReq('pvc-3', { node: 'n1', snapshot: snap.snapshot_id }));
    assert.equal(restored.volume!.content_source?.snapshot?.snapshot_id, snap.snapshot_id);
    const clone = await w.controller.CreateVolume(deadline(), createReq('pvc-3b', { volume: vol }));
    assert.deepEqual(clone.volume!.accessible_topology, [{ segments: { 'dmthin.csi.io/node': 'n1' } }]);
    await assert.rejects(w.controller.CreateVolume(deadline(), createReq('pvc-4', { node: 'n2', snapshot: snap.snapshot_id })),
      (e: { code: number; message: string }) => e.code === Code.RESOURCE_EXHAUSTED && /only possible on its node n1/.test(e.message));
    const snaps = await w.controller.ListSnapshots(deadline(), listSnapshotsReq({ source_volume_id: vol }));
    assert.deepEqual((snaps.entries ?? []).map((e) => e.snapshot?.snapshot_id), [snap.snapshot_id]);
  });

  it('expands: the controller raises spec.sizeBytes, the agent grows the device', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-5', { node: 'n2' }))).volume!.volume_id!;
    const res = await w.controller.ControllerExpandVolume(deadline(), expandReq({ volume_id: id, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 } }));
    assert.equal(res.capacity_bytes, 128 * MiB);
    const rec = await w.nodes.get('n2')!.store.getDevice(id);
    assert.equal(rec?.sizeBytes, 128 * MiB);
  });

  it('answers ControllerExpandVolume only once the live device is grown, never before', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-5b', { node: 'n2' }))).volume!.volume_id!;
    const kn = w.nodes.get('n2')!;
    const dm = w.dms.get('n2')!;
    const path = await kn.devices.activate(deadline(), id);
    const expand = () => w.controller.ControllerExpandVolume(deadline(), expandReq({ volume_id: id, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 } }));
    // The table reload keeps failing: the size must not be promised while the kernel still has the old one.
    dm.inject({ op: 'reload', error: new DmError('invalid', 'reload failed'), times: 1000 });
    await assert.rejects(expand(), (e: { code: number; message: string }) => e.code !== Code.OK && /reload failed/.test(e.message));
    assert.equal(dm.sizeOf(path), 64 * MiB);
    assert.equal((await kn.store.getDevice(id))?.sizeBytes, 64 * MiB, 'the record still says the old size');
    dm.clearFaults();
    assert.equal((await expand()).capacity_bytes, 128 * MiB); // the CO's retry
    assert.equal(dm.sizeOf(path), 128 * MiB, 'grown before the answer');
    await kn.devices.deactivate(deadline(), id);
  });

  it('the agent leaves a volume alone while a Node RPC holds it (the per-volume lock is shared)', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-5c', { node: 'n2' }))).volume!.volume_id!;
    const kn = w.nodes.get('n2')!;
    const dm = w.dms.get('n2')!;
    const path = await kn.devices.activate(deadline(), id);
    let release!: () => void;
    const rpc = kn.agent.locks.run(id, () => new Promise<void>((r) => { release = r; }));
    const expanding = w.controller.ControllerExpandVolume(deadline(), expandReq({ volume_id: id, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 } }));
    await until(async () => (w.d.object('thinvolumes.dmthin.csi.io', id) as unknown as ThinVolume).spec.sizeBytes === 128 * MiB, 'spec raised');
    try {
      await sleep(700); // the watch event, two resyncs (300 ms), many queue turns
      assert.equal(dm.sizeOf(path), 64 * MiB, 'not touched while the RPC holds the volume');
    } finally {
      release();
      await rpc;
    }
    assert.equal((await expanding).capacity_bytes, 128 * MiB);
    assert.equal(dm.sizeOf(path), 128 * MiB);
    await kn.devices.deactivate(deadline(), id);
  });

  it('deletes: the agent removes the device, then the finalizer, then the CR is gone', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-6', { node: 'n2' }))).volume!.volume_id!;
    const kn = w.nodes.get('n2')!;
    const devId = (await kn.store.getDevice(id))!.deviceId;
    await w.controller.DeleteVolume(deadline(), deleteVolumeReq(id));
    assert.equal(w.d.object('thinvolumes.dmthin.csi.io', id), undefined);
    // The id is freed in memory just after the finalizer's removal ended the object.
    await until(() => !kn.devices.pool.isIdUsed(devId), 'thin id released');
    const msgs = w.dms.get('n2')!.ops.filter((o) => o.op === 'message').map((o) => o.args.join(' '));
    assert.ok(msgs.some((m) => m.includes(`delete ${devId}`)), msgs.join('\n'));
    // Deleting again is success.
    await w.controller.DeleteVolume(deadline(), deleteVolumeReq(id));
  });

  it('refuses a node whose pool cannot hold the size, with RESOURCE_EXHAUSTED', async () => {
    await assert.rejects(w.controller.CreateVolume(deadline(), createReq('pvc-big', { node: 'n1', size: 4096 * MiB })),
      (e: { code: number }) => e.code === Code.RESOURCE_EXHAUSTED);
    assert.equal(w.d.objects('thinvolumes.dmthin.csi.io').some((o) => (o.spec as { csiName: string }).csiName === 'pvc-big'), false);
  });

  it('keeps ThinPool status and reports capacity per node', async () => {
    await until(() => ((w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr | undefined)?.status?.transactionId ?? 0) > 0, 'tx in ThinPool status');
    const pool = w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr;
    assert.equal(pool.status?.poolName, POOL);
    assert.equal(pool.status?.health, 'ok');
    assert.equal(pool.status?.dataTotalBytes, 1024 * MiB);
    const cap = await w.controller.GetCapacity(deadline(), capacityReq({ accessible_topology: { segments: { 'dmthin.csi.io/node': 'n1' } } }));
    assert.ok(Number(cap.available_capacity) > 0 && Number(cap.available_capacity) <= 1024 * MiB);
  });
});
