// The README's getting-started manifests (deploy/examples/) against the chart they run on:
// every class and claim they name exists (in the default render or in the examples), the
// driver name and API versions are the chart's, and each object validates against Kubernetes'
// schemas (the VolumeSnapshot against external-snapshotter v8.6.0's CRD, copied in fixtures/).
// real-apiserver.test.ts creates them on a real kube-apiserver beside the installed chart.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { load, loadAll } from 'js-yaml';
import { renderChart, ROOT } from './render.ts';
import { crdSchema, unknownBuiltinFields, validateAgainstCrd, validateBuiltin } from './schema.ts';

type Any = any;
const DIR = path.join(ROOT, 'deploy', 'examples');
const SNAPSHOT_CRD = path.join(import.meta.dirname, 'fixtures', 'snapshot.storage.k8s.io_volumesnapshots.yaml');

function examples(): Array<{ file: string; object: Any }> {
  return readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort()
    .flatMap((file) => (loadAll(readFileSync(path.join(DIR, file), 'utf8')) as Any[]).filter(Boolean).map((object) => ({ file, object })));
}

const named = (objs: Any[], kind: string) => new Set(objs.filter((o) => o.kind === kind).map((o) => o.metadata.name as string));

test('the README shows the four example files, in the order they are applied', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const order = ['pvc-pod.yaml', 'snapshot.yaml', 'restore.yaml'].map((f) => readme.indexOf(`kubectl apply -f deploy/examples/${f}`));
  assert.ok(order.every((i) => i >= 0), 'README applies each example');
  assert.deepEqual([...order].sort((a, b) => a - b), order);
  assert.ok(readme.includes('deploy/examples/storageclass-xfs.yaml'));
});

test('every object validates against Kubernetes\' schemas', async () => {
  const snapshotSchema = crdSchema(load(readFileSync(SNAPSHOT_CRD, 'utf8')) as Any, 'v1');
  const all = examples();
  assert.deepEqual(all.map((e) => `${e.file}:${e.object.kind}`), [
    'pvc-pod.yaml:PersistentVolumeClaim', 'pvc-pod.yaml:Pod', 'restore.yaml:PersistentVolumeClaim', 'restore.yaml:Pod',
    'snapshot.yaml:VolumeSnapshot', 'storageclass-xfs.yaml:StorageClass',
  ]);
  for (const { file, object } of all) {
    if (object.kind === 'VolumeSnapshot') {
      assert.equal(object.apiVersion, 'snapshot.storage.k8s.io/v1', file);
      assert.deepEqual(validateAgainstCrd(object, snapshotSchema), [], file);
      continue;
    }
    assert.deepEqual(await validateBuiltin(object), [], file);
    assert.deepEqual(unknownBuiltinFields(object), [], file);
  }
  assert.notDeepEqual(validateAgainstCrd({ ...all.find((e) => e.object.kind === 'VolumeSnapshot')!.object, spec: { volumeSnapshotClassName: 'dmthin' } }, snapshotSchema), [],
    'the VolumeSnapshot check catches a snapshot without a source');
});

test('every class, claim and snapshot they name exists, in the default render or in the examples', async () => {
  const chart = (await renderChart()).map((d) => d.object as Any);
  const objs = examples().map((e) => e.object);
  const classes = new Set([...named(chart, 'StorageClass'), ...named(objs, 'StorageClass')]);
  const claims = named(objs, 'PersistentVolumeClaim');
  for (const pvc of objs.filter((o) => o.kind === 'PersistentVolumeClaim')) {
    assert.ok(named(chart, 'StorageClass').has(pvc.spec.storageClassName), `${pvc.metadata.name}: the chart's StorageClass`);
    const ds = pvc.spec.dataSource;
    if (ds) {
      assert.deepEqual([ds.apiGroup, ds.kind], ['snapshot.storage.k8s.io', 'VolumeSnapshot']);
      const snap = objs.find((o) => o.kind === 'VolumeSnapshot' && o.metadata.name === ds.name);
      assert.ok(snap, `${pvc.metadata.name}: its snapshot is in the examples`);
      const source = objs.find((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === snap.spec.source.persistentVolumeClaimName);
      assert.ok(source, 'the snapshot\'s source claim is in the examples');
      const gi = (q: string) => Number(/^(\d+)Gi$/.exec(q)![1]);
      assert.ok(gi(pvc.spec.resources.requests.storage) >= gi(source.spec.resources.requests.storage), 'a restore is at least its source\'s size');
    }
  }
  for (const pod of objs.filter((o) => o.kind === 'Pod')) {
    for (const v of pod.spec.volumes) assert.ok(claims.has(v.persistentVolumeClaim.claimName), `${pod.metadata.name}: ${v.persistentVolumeClaim.claimName}`);
  }
  for (const snap of objs.filter((o) => o.kind === 'VolumeSnapshot')) {
    assert.ok(named(chart, 'VolumeSnapshotClass').has(snap.spec.volumeSnapshotClassName), 'the chart\'s VolumeSnapshotClass');
    assert.equal(chart.find((o) => o.kind === 'VolumeSnapshotClass').driver, 'dmthin.csi.io');
  }
  assert.ok(classes.size >= 2);
});

test('the example StorageClass is what the chart makes from the values its comment names', async () => {
  const sc = examples().find((e) => e.object.kind === 'StorageClass')!.object;
  const rendered = (await renderChart({ values: { storageClasses: [{ name: 'dmthin-xfs', fsType: 'xfs', reclaimPolicy: 'Retain' }] } }))
    .find((d) => d.object.kind === 'StorageClass')!.object as Any;
  delete rendered.metadata.labels;
  assert.deepEqual(sc, rendered);
  const driver = (await renderChart()).find((d) => d.object.kind === 'CSIDriver')!.object as Any;
  assert.equal(sc.provisioner, driver.metadata.name);
});
