// CRD-driven registration and discovery of the kube test double.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { load } from 'js-yaml';
import { ApiextensionsV1Api, CustomObjectsApi, loadYaml } from '@kubernetes/client-node';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { startApiDouble } from '../../../doubles/kube-api/index.ts';
import type { ApiDouble } from '../../../doubles/kube-api/index.ts';
import { GROUP, VERSION, rejectsWith, thinPoolCrd } from './helpers.ts';

const SNAPSHOT_CRD_YAML = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: thinsnapshots.${GROUP}
spec:
  group: ${GROUP}
  scope: Cluster
  names: { plural: thinsnapshots, singular: thinsnapshot, kind: ThinSnapshot, listKind: ThinSnapshotList }
  versions:
    - name: ${VERSION}
      served: true
      storage: true
      subresources: { status: {} }
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
`;

describe('kube double: CRDs', () => {
  const doubles: ApiDouble[] = [];
  after(async () => {
    for (const d of doubles) await d.close();
  });

  it('registers resources from CRD objects passed at start (e.g. the shipped YAML)', async () => {
    const d = await startApiDouble({ crds: [thinPoolCrd(), loadYaml(SNAPSHOT_CRD_YAML)] });
    doubles.push(d);
    const tp = d.registry.find(GROUP, VERSION, 'thinpools');
    assert.deepEqual([tp?.kind, tp?.namespaced, tp?.statusSubresource, tp?.custom], ['ThinPool', false, true, true]);
    const api = d.kubeConfig().makeApiClient(CustomObjectsApi);
    await api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'thinsnapshots',
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'ThinSnapshot', metadata: { name: 's' } } });
    assert.equal(d.objects('thinsnapshots').length, 1);
  });

  it('serves a CRD created through ApiextensionsV1Api and marks it Established', async () => {
    const d = await startApiDouble();
    doubles.push(d);
    const api = d.kubeConfig().makeApiClient(CustomObjectsApi);
    const tp = { group: GROUP, version: VERSION, plural: 'thinpools' };
    await rejectsWith(api.listClusterCustomObject(tp), 404);
    const ext = d.kubeConfig().makeApiClient(ApiextensionsV1Api);
    const created = await ext.createCustomResourceDefinition({ body: thinPoolCrd() as unknown as V1CustomResourceDefinition });
    assert.equal(created.metadata?.name, `thinpools.${GROUP}`);
    const read = await ext.readCustomResourceDefinition({ name: `thinpools.${GROUP}` });
    assert.ok(read.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'));
    await api.createClusterCustomObject({ ...tp, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'ThinPool', metadata: { name: 'p' } } });
    const res = await fetch(`${d.url}/apis/${GROUP}/${VERSION}`);
    const doc = (await res.json()) as { resources: Array<{ name: string }> };
    assert.deepEqual(doc.resources.map((r) => r.name), ['thinpools', 'thinpools/status']);
  });

  it('enforces the CRD\'s x-kubernetes-validations as kube-apiserver v1.26.4 does (messages as it words them)', async () => {
    const crd = load(readFileSync(new URL('../../../../deploy/crds/dmthin.csi.io_thinvolumes.yaml', import.meta.url), 'utf8'));
    const d = await startApiDouble({ crds: [crd] });
    doubles.push(d);
    const base = `${d.url}/apis/${GROUP}/${VERSION}/thinvolumes`;
    const send = (method: string, url: string, body: object, type = 'application/json') =>
      fetch(url, { method, headers: { 'content-type': type }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: await r.json() as { message?: string } }));
    const created = await send('POST', base, { apiVersion: `${GROUP}/${VERSION}`, kind: 'ThinVolume', metadata: { name: 'v1' },
      spec: { nodeName: 'n1', sizeBytes: 100, accessType: 'mount', fsType: 'ext4', csiName: 'x' } });
    assert.equal(created.status, 201);
    const patch = (p: object) => send('PATCH', `${base}/v1`, p, 'application/merge-patch+json');
    const refused = await patch({ spec: { nodeName: 'n2' } });
    assert.equal(refused.status, 422);
    assert.equal(refused.body.message, 'ThinVolume.dmthin.csi.io "v1" is invalid: spec: Invalid value: "object": spec.nodeName is immutable: the device lives in that node\'s pool');
    assert.equal((await patch({ spec: { sizeBytes: 50 } })).status, 422);
    assert.equal((await patch({ spec: { fsType: null } })).status, 422);
    assert.equal((await patch({ spec: { source: { kind: 'volume', name: 'a' } } })).status, 422);
    assert.equal((await patch({ spec: { sizeBytes: 200 } })).status, 200);
  });
});
