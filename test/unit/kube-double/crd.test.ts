// CRD-driven registration and discovery of the kube test double.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ApiextensionsV1Api, CustomObjectsApi, loadYaml } from '@kubernetes/client-node';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { startApiDouble } from '../../kube-double/index.ts';
import type { ApiDouble } from '../../kube-double/index.ts';
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
});
