// What `kubectl get` shows of the custom resources: sizes as quantities, the PV and PVC a
// ThinVolume was made for (external-provisioner's --extra-create-metadata parameters), a
// Faulty device's reason, the pool's health; and objects of the previous release (no such
// fields) still print, with those cells empty.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { claimMeta } from '../../../src/controller/volumes.ts';
import { CRDS } from '../../../src/kube/crds.ts';
import { formatBytes, quantity } from '../../../src/kube/quantity.ts';
import type { ThinPoolCr, ThinSnapshot, ThinVolume } from '../../../src/kube/types.ts';
import { expandReq, snapshotReq } from '../../support/requests.ts';
import { createReq, deadline, MiB, until, world, type World } from './harness.ts';

type Column = { name: string; jsonPath: string; priority?: number };
const columnsOf = (plural: string): Column[] => {
  const crd = CRDS.find((c) => c.fileName.includes(`_${plural}.`))!.object as { spec: { versions: Array<{ additionalPrinterColumns: Column[] }> } };
  return crd.spec.versions[0]!.additionalPrinterColumns;
};

/** A row as kubectl fills it: each column's simple JSONPath (.a.b.c), '<none>' where it finds nothing. */
function row(plural: string, obj: object, wide = false): Record<string, string> {
  const cells: Record<string, string> = {};
  for (const c of columnsOf(plural).filter((x) => wide || !x.priority)) {
    let v: unknown = obj;
    for (const k of c.jsonPath.split('.').slice(1)) v = (v as Record<string, unknown> | undefined)?.[k];
    cells[c.name] = v === undefined || v === '' ? '<none>' : String(v);
  }
  return cells;
}

const CLAIM = { 'csi.storage.k8s.io/pv/name': 'pvc-0a1b', 'csi.storage.k8s.io/pvc/name': 'data-db-0', 'csi.storage.k8s.io/pvc/namespace': 'shop' };

describe('claimMeta', () => {
  it('keeps the PV and PVC the CO passed, and refuses a name longer than Kubernetes allows', () => {
    assert.deepEqual(claimMeta(CLAIM), { 'co.pv.name': 'pvc-0a1b', 'co.pvc.name': 'data-db-0', 'co.pvc.namespace': 'shop' });
    assert.deepEqual(claimMeta({ fsType: 'xfs' }), {});
    assert.throws(() => claimMeta({ 'csi.storage.k8s.io/pvc/namespace': 'n'.repeat(64) }), (e: { code: number; message: string }) =>
      e.code === Code.INVALID_ARGUMENT && /pvc\/namespace is longer than 63/.test(e.message));
  });
});

describe('quantities', () => {
  it('quantity is exact, in the largest whole unit; formatBytes rounds for reading', () => {
    assert.deepEqual([64 * MiB, 1536 * MiB, 1024 ** 3, 1000, 0, 65536 * 3].map(quantity), ['64Mi', '1536Mi', '1Gi', '1000', '0', '192Ki']);
    assert.deepEqual([1536, 15.8 * 1024 ** 3].map(formatBytes), ['1.5Ki', '15.8Gi']);
  });
});

describe('kubectl columns of the custom resources', () => {
  let w: World;
  before(async () => {
    w = await world();
    await w.startNode('n1');
  });
  after(async () => { await w.close(); });

  it('ThinVolume: size as a quantity, kept with spec.sizeBytes on expansion, and its PV and PVC', async () => {
    const req = createReq('pvc-0a1b', { node: 'n1' });
    const id = (await w.controller.CreateVolume(deadline(), { ...req, parameters: { ...CLAIM } })).volume!.volume_id!;
    const cr = () => w.d.object('thinvolumes.dmthin.csi.io', id) as unknown as ThinVolume;
    assert.deepEqual(cr().spec.claim, { pvName: 'pvc-0a1b', pvcName: 'data-db-0', pvcNamespace: 'shop' });
    assert.equal(cr().spec.size, '64Mi');
    assert.deepEqual(row('thinvolumes', cr()), { Node: 'n1', Size: '64Mi', State: 'Created', PVC: 'data-db-0', Age: cr().metadata.creationTimestamp!, Reason: '<none>' });
    assert.deepEqual(Object.keys(row('thinvolumes', cr(), true)), ['Node', 'Size', 'State', 'PVC', 'Age', 'Reason', 'ClaimNamespace', 'PV', 'Source', 'DeviceID', 'Bytes']);
    assert.equal(row('thinvolumes', cr(), true).ClaimNamespace, 'shop');
    await w.controller.ControllerExpandVolume(deadline(), expandReq({ volume_id: id, capacity_range: { required_bytes: 128 * MiB, limit_bytes: 0 } }));
    assert.deepEqual([cr().spec.sizeBytes, cr().spec.size], [128 * MiB, '128Mi']);
    const rec = await w.backend.get(deadline(), id);
    assert.equal(rec?.meta['co.pvc.namespace'], 'shop', 'the claim reads back into the record');
  });

  it('ThinVolume without the extra metadata (a provisioner without the flag): no claim, the rest as before', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('pvc-plain', { node: 'n1' }))).volume!.volume_id!;
    const cr = w.d.object('thinvolumes.dmthin.csi.io', id) as unknown as ThinVolume;
    assert.equal(cr.spec.claim, undefined);
    assert.equal(row('thinvolumes', cr).PVC, '<none>');
  });

  it('ThinSnapshot: the source\'s size as a quantity', async () => {
    const vol = (await w.controller.CreateVolume(deadline(), createReq('pvc-s', { node: 'n1', size: 96 * MiB }))).volume!.volume_id!;
    const snap = (await w.controller.CreateSnapshot(deadline(), snapshotReq('snap-s', vol))).snapshot!.snapshot_id!;
    const cr = w.d.object('thinsnapshots.dmthin.csi.io', snap) as unknown as ThinSnapshot;
    assert.equal(cr.spec.size, '96Mi');
    assert.equal(row('thinsnapshots', cr).Size, '96Mi');
  });

  it('ThinPool: sizes as quantities and a Health column that shows the health', async () => {
    await until(() => Boolean((w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr | undefined)?.status?.capacity), 'pool status');
    const pool = w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr;
    const r = row('thinpools', pool);
    assert.deepEqual(Object.keys(r), ['Node', 'Size', 'Used', 'Capacity', 'Health', 'Age']);
    assert.equal(r.Size, '1Gi');
    assert.equal(r.Health, 'ok');
    assert.equal(r.Capacity, formatBytes(pool.status!.capacityBytes!));
    assert.equal(r.Used, formatBytes(pool.status!.dataUsedBytes!));
  });

  it('a Faulty device shows its reason; a previous release\'s objects (no size, no claim) still print', () => {
    const old = {
      metadata: { name: 'vol-old', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { nodeName: 'n1', sizeBytes: 1024 ** 3, accessType: 'mount', csiName: 'pvc-old' },
      status: { state: 'Faulty', code: 'INTERNAL', message: 'Activating: dmsetup create: Device or resource busy', sizeBytes: 1024 ** 3, deviceId: 4 },
    };
    assert.deepEqual(row('thinvolumes', old), { Node: 'n1', Size: '<none>', State: 'Faulty', PVC: '<none>', Age: '2026-01-01T00:00:00Z', Reason: 'Activating: dmsetup create: Device or resource busy' });
    assert.equal(row('thinvolumes', old, true).Bytes, String(1024 ** 3), 'the exact size is in the wide view');
    const oldPool = { metadata: { name: 'n1' }, spec: { nodeName: 'n1', poolName: 'p' }, status: { health: 'low_space', dataTotalBytes: 1 } };
    assert.equal(row('thinpools', oldPool).Health, 'low_space');
  });
});
