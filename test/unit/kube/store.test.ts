// CrdStore: the StateStore of one node kept in custom resources (API server TEST DOUBLE).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { CrdStore } from '../../../src/kube/crd-store.ts';
import { API_VERSION, FINALIZER, NODE_LABEL, type ThinPoolCr, type ThinVolume } from '../../../src/kube/types.ts';
import type { DeviceRecord } from '../../../src/state/types.ts';
import { StoreError } from '../../../src/state/types.ts';
import { startApiDouble, type ApiDouble } from '../../doubles/kube-api/index.ts';
import { loadCrds } from './harness.ts';

const TV = 'thinvolumes.dmthin.csi.io';
const ID = 'vol-0123456789abcdef0123456789abcdef';

function seedVolume(d: ApiDouble, name: string, node: string): void {
  d.seed(TV, { apiVersion: API_VERSION, kind: 'ThinVolume', metadata: { name, labels: { [NODE_LABEL]: node } }, spec: { nodeName: node, sizeBytes: 1048576, accessType: 'mount', fsType: 'ext4', csiName: 'pvc' } });
}

function record(id: string): DeviceRecord {
  const t = new Date().toISOString();
  return { id, dmName: 'ignored', kind: 'volume', deviceId: 5, sizeBytes: 1048576, state: 'Creating', meta: {}, createdAt: t, updatedAt: t };
}

describe('CrdStore', () => {
  let d: ApiDouble;
  let store: CrdStore;
  before(async () => {
    d = await startApiDouble({ crds: loadCrds() });
    store = new CrdStore(d.kubeConfig().makeApiClient(CustomObjectsApi), 'n1', 'pool');
  });
  after(async () => { await d.close(); });

  it('claims an unclaimed CR on createDevice; a second create is "exists"', async () => {
    seedVolume(d, ID, 'n1');
    assert.equal(await store.getDevice(ID), undefined); // unclaimed: no record yet
    const rec = await store.createDevice(record(ID));
    const cr = d.object(TV, ID) as unknown as ThinVolume;
    assert.equal(cr.status?.state, 'Creating');
    assert.equal(cr.status?.deviceId, 5);
    assert.equal(rec.dmName, `dmthin-${cr.metadata.uid}`); // names come from the UID, not the caller
    assert.equal(rec.meta['fs.type'], 'ext4');
    await assert.rejects(store.createDevice(record(ID)), (e: unknown) => e instanceof StoreError && e.kind === 'exists');
  });

  it('refuses to create a record without a CR, and ignores CRs of other nodes', async () => {
    await assert.rejects(store.createDevice(record('vol-ffffffffffffffffffffffffffffffff')), (e: unknown) => e instanceof StoreError && e.kind === 'io');
    seedVolume(d, 'vol-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'n2');
    await assert.rejects(store.createDevice(record('vol-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee')), StoreError);
    assert.deepEqual((await store.listDevices()).map((r) => r.id), [ID]);
  });

  it('updateDevice is compare-and-swap over the status subresource', async () => {
    const rec = await store.updateDevice(ID, (r) => { r.state = 'Faulty'; r.faultyFrom = 'Activating'; r.error = 'Activating: boom'; });
    assert.equal(rec.error, 'Activating: boom');
    const cr = d.object(TV, ID) as unknown as ThinVolume;
    assert.equal(cr.status?.code, 'INTERNAL');
    assert.equal(cr.status?.message, 'Activating: boom');
    await assert.rejects(store.updateDevice('vol-ffffffffffffffffffffffffffffffff', () => undefined), (e: unknown) => e instanceof StoreError && e.kind === 'not_found');
  });

  it('deleteDevice returns the CR to Pending, and drops the finalizer of a deleting CR', async () => {
    await store.deleteDevice(ID);
    assert.equal((d.object(TV, ID) as unknown as ThinVolume).status?.state, 'Pending');
    assert.equal(await store.getDevice(ID), undefined);
    await store.createDevice(record(ID));
    const cr = await store.readDevice(ID);
    await store.setFinalizer(cr!, true);
    await d.kubeConfig().makeApiClient(CustomObjectsApi).deleteClusterCustomObject({ group: 'dmthin.csi.io', version: 'v1alpha1', plural: 'thinvolumes', name: ID });
    assert.deepEqual((d.object(TV, ID) as unknown as ThinVolume).metadata.finalizers, [FINALIZER]);
    await store.deleteDevice(ID);
    assert.equal(d.object(TV, ID), undefined);
    await store.deleteDevice(ID); // idempotent
  });

  it('keeps the pool record in the ThinPool status', async () => {
    assert.equal(await store.getPool(), undefined);
    await store.updatePool((p) => ({ name: 'pool', transactionId: (p?.transactionId ?? 0) + 7, updatedAt: '' }));
    await store.updatePool((p) => ({ name: 'pool', transactionId: (p?.transactionId ?? 0) + 1, updatedAt: '' }));
    assert.equal((await store.getPool())?.transactionId, 8);
    const tp = d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr;
    assert.equal(tp.spec.nodeName, 'n1');
    assert.equal(tp.status?.transactionId, 8);
  });
});

describe('CrdStore without the ThinGroupSnapshot CRD (crds/ left as they were by a helm upgrade)', () => {
  it('lists no groups instead of failing, so the node agent still starts and serves volumes', async () => {
    const d = await startApiDouble({ crds: loadCrds().filter((c) => !JSON.stringify(c).includes('thingroupsnapshots')) });
    try {
      const store = new CrdStore(d.kubeConfig().makeApiClient(CustomObjectsApi), 'n1', 'pool');
      assert.deepEqual(await store.listGroups(), []);
    } finally {
      await d.close();
    }
  });
});
