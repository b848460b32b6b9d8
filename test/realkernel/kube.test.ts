/**
 * Kubernetes mode on a real kernel: the API server test double in this process, the real
 * `dmthin-csi controller` and `dmthin-csi node` processes against it and a real pool. A
 * PVC-like flow goes through ThinVolume/ThinSnapshot resources end to end, then the node
 * agent is SIGKILLed mid-operation and must converge after a restart.
 */
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { GiB, MiB } from '../support/csi-client.ts';
import { poolThinIds } from './harness.ts';
import { KubeWorld, SNAPS, staging, target, until, VOLS } from './kube-world.ts';
import { sleep } from '../../src/system/delay.ts';

const w = new KubeWorld();

describe('Kubernetes mode: controller + node agent + API double + real pool', { timeout: 1_800_000 }, () => {
  before(() => w.start());
  after(() => w.stop());

  const ids: Record<string, string> = {};

  it('creates, stages, snapshots, restores and expands through custom resources', async () => {
    ids.v1 = await until('volume created', () => w.createVolume('pvc-1', GiB));
    const cr = w.crs(VOLS).find((o) => o.metadata.name === ids.v1)!;
    assert.ok(cr.metadata.finalizers?.includes('dmthin.csi.io/device'), 'finalizer held while the device exists');
    await w.stagePublish(ids.v1);
    const fd = openSync(`${target(ids.v1)}/data.txt`, 'w');
    writeSync(fd, 'written before the snapshot\n');
    fsyncSync(fd);
    closeSync(fd);
    const snap = await w.csi.ctrl.controller.call('CreateSnapshot', { name: 'snap-1', source_volume_id: ids.v1 }, 180_000);
    assert.equal(snap.snapshot.ready_to_use, true);
    ids.s1 = snap.snapshot.snapshot_id;
    ids.v2 = await w.createVolume('pvc-restored', 2 * GiB, { snapshot: { snapshot_id: ids.s1 } });
    await w.stagePublish(ids.v2);
    assert.equal(readFileSync(`${target(ids.v2)}/data.txt`, 'utf8'), 'written before the snapshot\n');
    const exp = await w.csi.ctrl.controller.call('ControllerExpandVolume', { volume_id: ids.v1, capacity_range: { required_bytes: GiB + 256 * MiB } }, 180_000);
    assert.equal(Number(exp.capacity_bytes), GiB + 256 * MiB);
    await w.csi.node.node.call('NodeExpandVolume', { volume_id: ids.v1, volume_path: target(ids.v1), staging_target_path: staging(ids.v1) });
    w.assertConverged('after the flow');
  });

  it('converges after the node agent is SIGKILLed mid-operation', async () => {
    for (const [round, delay] of [300, 900, 1600].entries()) {
      const ops: Array<() => Promise<unknown>> = [
        () => w.createVolume(`pvc-crash-${round}`, 256 * MiB),
        () => w.csi.ctrl.controller.call('CreateSnapshot', { name: `snap-crash-${round}`, source_volume_id: ids.v1 }, 180_000),
      ];
      const inflight = ops.map((op) => op().catch(() => undefined));
      await sleep(delay);
      await w.startNode(); // SIGKILLs the running agent first
      await Promise.all(inflight);
      for (const op of ops) await until<unknown>(`round ${round} retried to success`, op); // the CO retries
      w.assertConverged(`after kill round ${round}`);
      assert.equal(readFileSync(`${target(ids.v1!)}/data.txt`, "utf8"), 'written before the snapshot\n');
    }
  });

  it('deletes everything, and the finalizers go only with the devices', async () => {
    for (const id of [ids.v1!, ids.v2!]) {
      await w.csi.node.node.call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
      await w.csi.node.node.call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
    }
    for (const o of w.crs(SNAPS)) await w.csi.ctrl.controller.call('DeleteSnapshot', { snapshot_id: o.metadata.name }, 180_000);
    for (const o of w.crs(VOLS)) await w.csi.ctrl.controller.call('DeleteVolume', { volume_id: o.metadata.name }, 180_000);
    assert.deepEqual([...w.crs(VOLS), ...w.crs(SNAPS)].map((o) => o.metadata.name), []);
    assert.deepEqual(poolThinIds(), []);
  });
});
