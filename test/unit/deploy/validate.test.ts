import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { load } from 'js-yaml';
import { type RenderedDoc, renderChart } from './render.ts';
import { crdSchema, unknownBuiltinFields, unknownCrdFields, validateAgainstCrd, validateBuiltin } from './schema.ts';

/** Copy of kubernetes-csi/external-snapshotter v8.6.0 client/config/crd (Apache-2.0, see fixtures/). */
const SNAPSHOT_CRD = path.join(import.meta.dirname, 'fixtures', 'snapshot.storage.k8s.io_volumesnapshotclasses.yaml');

function snapshotClassCrd(): Record<string, unknown> {
  return load(readFileSync(SNAPSHOT_CRD, 'utf8')) as Record<string, unknown>;
}

/** The same release's VolumeGroupSnapshotClass CRD (v1, served beside v1beta2, its storage version). */
const GROUP_SNAPSHOT_CRD = path.join(import.meta.dirname, 'fixtures', 'groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml');

function groupSnapshotClassCrd(): Record<string, unknown> {
  return load(readFileSync(GROUP_SNAPSHOT_CRD, 'utf8')) as Record<string, unknown>;
}

const variants: Array<[string, Record<string, unknown>]> = [
  ['default values', {}],
  ['per-node pools, default class, 3 controller replicas', {
    controller: { replicas: 3 },
    storageClasses: [{ name: 'dmthin', isDefault: true, fsType: 'xfs' }, { name: 'dmthin-retain', reclaimPolicy: 'Retain', mountOptions: ['noatime'] }],
    pools: { nodes: { 'worker-1.example': { name: 'fast', dataDevice: '/dev/nvme0n1p1', metadataDevice: '/dev/nvme0n1p2' }, 'worker-2': { existing: true, name: 'vg-pool' } } },
  }],
  ['group snapshots enabled', { volumeGroupSnapshots: { enabled: true, deletionPolicy: 'Retain' } }],
];

for (const [name, values] of variants) {
  test(`every rendered object validates against Kubernetes' schemas (${name})`, async () => {
    const docs = await renderChart({ values });
    assert.ok(docs.length >= 15, `only ${docs.length} objects rendered`);
    let groupClasses = 0;
    const crd = snapshotClassCrd();
    for (const d of docs as RenderedDoc[]) {
      const o = d.object;
      const where = `${d.source}: ${String(o.kind)} ${String((o.metadata as { name?: string } | undefined)?.name)}`;
      if (o.apiVersion === 'snapshot.storage.k8s.io/v1') {
        assert.equal(o.kind, 'VolumeSnapshotClass', where);
        assert.deepEqual(validateAgainstCrd(o, crdSchema(crd, 'v1')), [], where);
        continue;
      }
      if (o.apiVersion === 'groupsnapshot.storage.k8s.io/v1') {
        assert.equal(o.kind, 'VolumeGroupSnapshotClass', where);
        const schema = crdSchema(groupSnapshotClassCrd(), 'v1');
        assert.deepEqual(validateAgainstCrd(o, schema), [], where);
        assert.deepEqual(unknownCrdFields(o, schema, 'VolumeGroupSnapshotClass'), [], where);
        groupClasses++;
        continue;
      }
      assert.deepEqual(await validateBuiltin(o), [], where);
      assert.deepEqual(unknownBuiltinFields(o), [], where);
    }
    assert.equal(groupClasses, (values.volumeGroupSnapshots as { enabled?: boolean } | undefined)?.enabled ? 1 : 0, 'a VolumeGroupSnapshotClass exactly when enabled');
  });
}

test('the group snapshot class check catches what it claims to', async () => {
  const docs = await renderChart({ values: { volumeGroupSnapshots: { enabled: true } } });
  const vgsc = structuredClone(docs.find((d) => d.object.kind === 'VolumeGroupSnapshotClass')!.object) as any;
  assert.equal(vgsc.driver, 'dmthin.csi.io');
  const schema = crdSchema(groupSnapshotClassCrd(), 'v1');
  assert.notDeepEqual(validateAgainstCrd({ ...vgsc, deletionPolicy: 'Keep' }, schema), []);
  assert.notDeepEqual(validateAgainstCrd({ ...vgsc, driver: undefined }, schema), []);
  assert.deepEqual(unknownCrdFields({ ...vgsc, parameterz: {} }, schema, 'VolumeGroupSnapshotClass'), ['VolumeGroupSnapshotClass.parameterz: unknown field']);
});

test('the schema checks catch what they claim to', async () => {
  const docs = await renderChart();
  const ds = structuredClone(docs.find((d) => d.object.kind === 'DaemonSet')!.object) as any;
  ds.spec.template.spec.containers[0].imagee = 'typo';
  assert.deepEqual(unknownBuiltinFields(ds), ['DaemonSet.spec.template.spec.containers[0].imagee: unknown field (V1Container)']);
  ds.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
  assert.notDeepEqual(await validateBuiltin(ds), []);
  const vsc = structuredClone(docs.find((d) => d.object.kind === 'VolumeSnapshotClass')!.object) as any;
  const schema = crdSchema(snapshotClassCrd(), 'v1');
  assert.notDeepEqual(validateAgainstCrd({ ...vsc, deletionPolicy: 'Keep' }, schema), []);
  assert.notDeepEqual(validateAgainstCrd({ ...vsc, driver: undefined }, schema), []);
  assert.deepEqual(unknownCrdFields({ ...vsc, parameterz: {} }, schema, 'VolumeSnapshotClass'), ['VolumeSnapshotClass.parameterz: unknown field']);
});

test('the chart\'s CRDs validate as apiextensions.k8s.io/v1 CustomResourceDefinitions', async () => {
  const dir = path.join(import.meta.dirname, '../../../charts/dmthin-csi/crds');
  const { readdirSync } = await import('node:fs');
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
    const crd = load(readFileSync(path.join(dir, f), 'utf8')) as Record<string, any>;
    assert.deepEqual(await validateBuiltin(crd), [], f);
    assert.deepEqual(unknownBuiltinFields(crd), [], f);
    assert.equal(crd.spec.group, 'dmthin.csi.io', f);
    assert.equal(crd.spec.scope, 'Cluster', f);
    assert.deepEqual(crd.spec.versions.map((v: any) => v.name), ['v1alpha1'], f);
  }
});
