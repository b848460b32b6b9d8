// The kube test double honours CRUD semantics, driven only through @kubernetes/client-node.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CoordinationV1Api, CoreV1Api, EventsV1Api, KubernetesObjectApi, PatchStrategy, V1MicroTime, setHeaderOptions,
} from '@kubernetes/client-node';
import { TV, fileDouble, merge, rejectsWith, thinVolume } from './helpers.ts';

type Obj = { metadata: { name: string; resourceVersion: string; generation?: number; uid?: string }; [k: string]: unknown };
const names = (list: { items: Obj[] }): string[] => list.items.map((o) => o.metadata.name);

const { d, api: custom } = await fileDouble();

describe('kube double: CRUD via client-node', () => {

  it('creates, gets and lists custom objects with label and field selectors', async () => {
    const a = (await custom.createClusterCustomObject({ ...TV, body: thinVolume('sel-a', { pool: 'p1', tier: 'fast' }) })) as Obj;
    assert.match(a.metadata.uid ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(a.metadata.generation, 1);
    assert.equal(a.metadata.resourceVersion, d.resourceVersion());
    await custom.createClusterCustomObject({ ...TV, body: thinVolume('sel-b', { pool: 'p2' }) });
    await custom.createClusterCustomObject({ ...TV, body: thinVolume('sel-c', { pool: 'p3', tier: 'slow' }) });
    const got = (await custom.getClusterCustomObject({ ...TV, name: 'sel-a' })) as Obj;
    assert.deepEqual(got, a);
    const list = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> =>
      names((await custom.listClusterCustomObject({ ...TV, labelSelector, fieldSelector })) as { items: Obj[] });
    assert.deepEqual(await list('pool=p1'), ['sel-a']);
    assert.deepEqual(await list('pool==p1'), ['sel-a']);
    assert.deepEqual(await list('pool!=p1'), ['sel-b', 'sel-c']);
    assert.deepEqual(await list('pool in (p1, p3)'), ['sel-a', 'sel-c']);
    assert.deepEqual(await list('pool notin (p1),pool'), ['sel-b', 'sel-c']);
    assert.deepEqual(await list('tier'), ['sel-a', 'sel-c']);
    assert.deepEqual(await list('!tier'), ['sel-b']);
    assert.deepEqual(await list('tier!=fast'), ['sel-b', 'sel-c']);
    assert.deepEqual(await list(undefined, 'metadata.name=sel-b'), ['sel-b']);
    assert.deepEqual(await list('pool', 'metadata.name!=sel-b'), ['sel-a', 'sel-c']);
    const full = (await custom.listClusterCustomObject({ ...TV })) as { kind: string; metadata: { resourceVersion: string } };
    assert.equal(full.kind, 'ThinVolumeList');
    assert.equal(full.metadata.resourceVersion, d.resourceVersion());
    const bad = await rejectsWith(custom.listClusterCustomObject({ ...TV, fieldSelector: 'spec.sizeBytes=1' }), 400);
    assert.equal(bad.reason, 'BadRequest');
  });

  it('answers AlreadyExists / NotFound / generateName like the real server', async () => {
    await custom.createClusterCustomObject({ ...TV, body: thinVolume('dup') });
    const st = await rejectsWith(custom.createClusterCustomObject({ ...TV, body: thinVolume('dup') }), 409);
    assert.deepEqual([st.kind, st.apiVersion, st.status, st.reason, st.code], ['Status', 'v1', 'Failure', 'AlreadyExists', 409]);
    const nf = await rejectsWith(custom.getClusterCustomObject({ ...TV, name: 'nope' }), 404);
    assert.equal(nf.reason, 'NotFound');
    assert.equal(nf.message, 'thinvolumes.dmthin.csi.io "nope" not found');
    const body = thinVolume('');
    body['metadata'] = { generateName: 'gen-' };
    const g = (await custom.createClusterCustomObject({ ...TV, body })) as Obj;
    assert.match(g.metadata.name, /^gen-[a-z0-9]{5}$/);
    await rejectsWith(custom.deleteClusterCustomObject({ ...TV, name: 'nope' }), 404);
    const noKind = await rejectsWith(custom.createClusterCustomObject({ ...TV, body: { metadata: { name: 'x' } } }), 400);
    assert.equal(noKind.reason, 'BadRequest');
  });

  it('refuses a stale resourceVersion on replace with 409 Conflict; bumps generation on spec change only', async () => {
    const v1 = (await custom.createClusterCustomObject({ ...TV, body: thinVolume('upd') })) as Obj;
    const labelled = { ...v1, metadata: { ...v1.metadata, labels: { x: 'y' } } };
    const v2 = (await custom.replaceClusterCustomObject({ ...TV, name: 'upd', body: labelled })) as Obj;
    assert.equal(v2.metadata.generation, 1);
    assert.ok(Number(v2.metadata.resourceVersion) > Number(v1.metadata.resourceVersion));
    const st = await rejectsWith(custom.replaceClusterCustomObject({ ...TV, name: 'upd', body: { ...v1, spec: { sizeBytes: 2 } } }), 409);
    assert.equal(st.reason, 'Conflict');
    assert.match(st.message, /the object has been modified/);
    const v3 = (await custom.replaceClusterCustomObject({ ...TV, name: 'upd', body: { ...v2, spec: { sizeBytes: 2 } } })) as Obj;
    assert.equal(v3.metadata.generation, 2);
    const same = (await custom.replaceClusterCustomObject({ ...TV, name: 'upd', body: v3 })) as Obj;
    assert.equal(same.metadata.resourceVersion, v3.metadata.resourceVersion, 'no-op update keeps the resourceVersion');
    const { resourceVersion: _rv, ...noRv } = v3.metadata;
    const inv = await rejectsWith(custom.replaceClusterCustomObject({ ...TV, name: 'upd', body: { ...v3, metadata: noRv } }), 422);
    assert.equal(inv.reason, 'Invalid');
  });

  it('patches: json-patch by default, merge-patch via Content-Type option, resourceVersion precondition', async () => {
    const v1 = (await custom.createClusterCustomObject({ ...TV, body: thinVolume('pat', { a: '1' }) })) as Obj;
    // client-node 2.x sends application/json-patch+json unless told otherwise: the body must be an op array.
    const jp = (await custom.patchClusterCustomObject({ ...TV, name: 'pat', body: [
      { op: 'test', path: '/metadata/labels/a', value: '1' },
      { op: 'add', path: '/metadata/labels/b', value: '2' },
    ] })) as Obj & { metadata: { labels: Record<string, string> } };
    assert.deepEqual(jp.metadata.labels, { a: '1', b: '2' });
    await rejectsWith(custom.patchClusterCustomObject({ ...TV, name: 'pat', body: { spec: { sizeBytes: 5 } } }), 400);
    await rejectsWith(custom.patchClusterCustomObject({ ...TV, name: 'pat', body: [{ op: 'test', path: '/spec/sizeBytes', value: 7 }] }), 422);
    const mp = (await custom.patchClusterCustomObject({ ...TV, name: 'pat', body: { metadata: { labels: { a: null } }, spec: { sizeBytes: 5 } } }, merge)) as
      Obj & { metadata: { labels: Record<string, string> }; spec: { sizeBytes: number } };
    assert.deepEqual(mp.metadata.labels, { b: '2' });
    assert.equal(mp.spec.sizeBytes, 5);
    assert.equal(mp.metadata.generation, 2);
    const stale = { metadata: { resourceVersion: v1.metadata.resourceVersion }, spec: { sizeBytes: 6 } };
    assert.equal((await rejectsWith(custom.patchClusterCustomObject({ ...TV, name: 'pat', body: stale }, merge), 409)).reason, 'Conflict');
    const smp = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
    await rejectsWith(custom.patchClusterCustomObject({ ...TV, name: 'pat', body: { spec: {} } }, smp), 415);
    await rejectsWith(custom.patchClusterCustomObject({ ...TV, name: 'missing', body: { spec: {} } }, merge), 404);
  });

  it('serves core v1 nodes (cluster-scoped) through CoreV1Api', async () => {
    const core = d.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNode({ body: { metadata: { name: 'node-a', labels: { zone: 'z1' } } } });
    await core.createNode({ body: { metadata: { name: 'node-b', labels: { zone: 'z2' } } } });
    assert.deepEqual((await core.listNode({ labelSelector: 'zone=z2' })).items.map((n) => n.metadata?.name), ['node-b']);
    const patched = await core.patchNode({ name: 'node-a', body: { metadata: { labels: { extra: 'x' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
    assert.deepEqual(patched.metadata?.labels, { zone: 'z1', extra: 'x' });
    const st = await core.deleteNode({ name: 'node-b' });
    assert.equal(st.status, 'Success');
    assert.equal((await core.listNode({})).items.length, 1);
  });

  it('serves namespaced leases (CoordinationV1Api) with optimistic concurrency and MicroTime strictness', async () => {
    const coord = d.kubeConfig().makeApiClient(CoordinationV1Api);
    const spec = { holderIdentity: 'a', leaseDurationSeconds: 15 };
    // Like the real server: a plain Date serialises with 3 fractional digits and is refused.
    const bad = await rejectsWith(coord.createNamespacedLease({ namespace: 'kube-system', body: {
      metadata: { name: 'dmthin-leader' }, spec: { ...spec, renewTime: new Date() },
    } }), 400);
    assert.match(bad.message, /cannot be handled as a Lease/);
    const lease = await coord.createNamespacedLease({ namespace: 'kube-system', body: {
      metadata: { name: 'dmthin-leader' }, spec: { ...spec, renewTime: new V1MicroTime() },
    } });
    assert.equal(lease.metadata?.namespace, 'kube-system');
    // client-node 2.x does not revive MicroTime fields: they come back as strings.
    assert.match(String(lease.spec?.renewTime), /\.\d{6}Z$/);
    const renewed = await coord.replaceNamespacedLease({ name: 'dmthin-leader', namespace: 'kube-system',
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b', renewTime: new V1MicroTime() } } });
    assert.equal(renewed.spec?.holderIdentity, 'b');
    await rejectsWith(coord.replaceNamespacedLease({ name: 'dmthin-leader', namespace: 'kube-system', body: lease }), 409);
    await rejectsWith(coord.readNamespacedLease({ name: 'dmthin-leader', namespace: 'other' }), 404);
    assert.equal((await coord.listLeaseForAllNamespaces({})).items.length, 1);
  });

  it('serves core v1 and events.k8s.io/v1 events', async () => {
    const core = d.kubeConfig().makeApiClient(CoreV1Api);
    const ev = d.kubeConfig().makeApiClient(EventsV1Api);
    await core.createNamespacedEvent({ namespace: 'default', body: {
      metadata: { generateName: 'vol-' }, involvedObject: { kind: 'PersistentVolumeClaim', name: 'pvc-1', namespace: 'default' },
      reason: 'Provisioned', message: 'ok', type: 'Normal',
    } });
    await ev.createNamespacedEvent({ namespace: 'default', body: {
      metadata: { generateName: 'vol-' }, eventTime: new V1MicroTime(), reportingController: 'dmthin.csi.io/controller',
      reportingInstance: 'c-0', action: 'Provision', reason: 'Provisioned', regarding: { kind: 'PersistentVolumeClaim', name: 'pvc-1' },
    } });
    const found = await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=pvc-1' });
    assert.equal(found.items.length, 1);
    assert.equal((await ev.listNamespacedEvent({ namespace: 'default', fieldSelector: 'regarding.name=pvc-1' })).items.length, 1);
    assert.equal(d.objects('events').length, 1);
    assert.equal(d.objects('events.events.k8s.io').length, 1);
  });

  it('supports KubernetesObjectApi through the discovery endpoints', async () => {
    const generic = d.kubeConfig().makeApiClient(KubernetesObjectApi);
    await generic.create({ apiVersion: `${TV.group}/${TV.version}`, kind: 'ThinVolume', metadata: { name: 'generic' }, spec: {} });
    const read = await generic.read({ apiVersion: `${TV.group}/${TV.version}`, kind: 'ThinVolume', metadata: { name: 'generic' } });
    assert.equal(read.metadata?.name, 'generic');
    assert.ok(d.requests.some((r) => r.verb === 'discovery' && r.path === '/apis/dmthin.csi.io/v1alpha1'));
  });
});
