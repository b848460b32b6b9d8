import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { PLAIN_MANIFEST, renderChart, toManifest } from './render.ts';

test('deploy/dmthin-csi.yaml is the default render of the chart', async () => {
  const expected = toManifest(await renderChart());
  assert.equal(readFileSync(PLAIN_MANIFEST, 'utf8'), expected,
    'deploy/dmthin-csi.yaml is stale: run `node test/unit/deploy/render.ts --write`');
});

test('the default render creates everything a cluster needs', async () => {
  const docs = await renderChart();
  const kinds = docs.map((d) => `${String(d.object.kind)}/${String((d.object.metadata as { name: string }).name)}`).sort();
  assert.deepEqual(kinds, [
    'CSIDriver/dmthin.csi.io',
    'ClusterRole/dmthin-csi-controller', 'ClusterRole/dmthin-csi-node',
    'ClusterRoleBinding/dmthin-csi-controller', 'ClusterRoleBinding/dmthin-csi-node',
    'ConfigMap/dmthin-csi-pools', 'DaemonSet/dmthin-csi-node', 'Deployment/dmthin-csi-controller',
    'Role/dmthin-csi-controller-leader-election', 'RoleBinding/dmthin-csi-controller-leader-election',
    'Service/dmthin-csi-controller-metrics', 'Service/dmthin-csi-node-metrics',
    'ServiceAccount/dmthin-csi-controller', 'ServiceAccount/dmthin-csi-node',
    'StorageClass/dmthin', 'VolumeSnapshotClass/dmthin',
  ]);
  for (const d of docs) {
    assert.ok(!d.text.includes('<no value>'), `${d.source} printed <no value>`);
    const ns = (d.object.metadata as { namespace?: string }).namespace;
    if (ns !== undefined) assert.equal(ns, 'kube-system', d.source);
  }
});

test('CSIDriver, StorageClass and VolumeSnapshotClass say what the issue asks', async () => {
  const docs = await renderChart();
  const get = (kind: string) => docs.find((d) => d.object.kind === kind)!.object as any;
  assert.deepEqual(get('CSIDriver').spec, {
    attachRequired: false, podInfoOnMount: false, storageCapacity: true, fsGroupPolicy: 'File',
    requiresRepublish: false, volumeLifecycleModes: ['Persistent'],
  });
  const sc = get('StorageClass');
  assert.equal(sc.provisioner, 'dmthin.csi.io');
  assert.equal(sc.volumeBindingMode, 'WaitForFirstConsumer');
  assert.equal(sc.allowVolumeExpansion, true);
  assert.deepEqual(sc.parameters, { 'csi.storage.k8s.io/fstype': 'ext4' });
  assert.equal(sc.metadata.annotations, undefined);
  assert.equal(get('VolumeSnapshotClass').driver, 'dmthin.csi.io');
  assert.equal(get('VolumeSnapshotClass').deletionPolicy, 'Delete');
});

test('controller: driver and the four sidecars share the socket emptyDir', async () => {
  const dep = (await renderChart()).find((d) => d.object.kind === 'Deployment')!.object as any;
  const spec = dep.spec.template.spec;
  assert.deepEqual(spec.volumes, [{ name: 'socket-dir', emptyDir: {} }]);
  const byName = new Map<string, any>(spec.containers.map((c: any) => [c.name, c]));
  assert.deepEqual([...byName.keys()], ['dmthin-csi', 'csi-provisioner', 'csi-snapshotter', 'csi-resizer', 'liveness-probe']);
  for (const c of byName.values()) assert.deepEqual(c.volumeMounts, [{ name: 'socket-dir', mountPath: '/csi' }], c.name);
  assert.deepEqual(byName.get('dmthin-csi').args.slice(0, 4), ['controller', '--endpoint=unix:///csi/csi.sock', '--metrics-address=:8080', '--lease-namespace=$(POD_NAMESPACE)']);
  const prov = byName.get('csi-provisioner').args;
  for (const a of ['--feature-gates=Topology=true', '--enable-capacity', '--capacity-ownerref-level=2']) assert.ok(prov.includes(a), a);
  assert.ok(byName.get('csi-provisioner').env.some((e: any) => e.name === 'POD_NAME'), 'capacity ownerref needs POD_NAME');
  for (const c of byName.values()) {
    if (c.name !== 'dmthin-csi') assert.match(c.image, /^registry\.k8s\.io\/sig-storage\/[a-z-]+:v\d+\.\d+\.\d+$/, 'sidecars pinned to a release');
  }
});

test('node: privileged driver, Bidirectional kubelet dir, /dev, state dir, system-node-critical', async () => {
  const ds = (await renderChart()).find((d) => d.object.kind === 'DaemonSet')!.object as any;
  const spec = ds.spec.template.spec;
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.equal(spec.hostPID, false);
  const [driver, registrar, probe] = spec.containers;
  assert.deepEqual([driver.name, registrar.name, probe.name], ['dmthin-csi', 'node-driver-registrar', 'liveness-probe']);
  assert.equal(driver.securityContext.privileged, true);
  assert.equal(registrar.securityContext, undefined);
  const mount = (name: string) => driver.volumeMounts.find((m: any) => m.name === name);
  assert.deepEqual(mount('kubelet-dir'), { name: 'kubelet-dir', mountPath: '/var/lib/kubelet', mountPropagation: 'Bidirectional' });
  assert.equal(mount('dev').mountPath, '/dev');
  assert.equal(mount('state-dir').mountPath, '/var/lib/dmthin-csi');
  const vol = (name: string) => spec.volumes.find((v: any) => v.name === name);
  assert.deepEqual(vol('state-dir').hostPath, { path: '/var/lib/dmthin-csi', type: 'DirectoryOrCreate' });
  assert.deepEqual(vol('dev').hostPath, { path: '/dev', type: 'Directory' });
  assert.ok(registrar.args.includes('--kubelet-registration-path=/var/lib/kubelet/plugins/dmthin.csi.io/csi.sock'));
  const script = driver.command[2] as string;
  assert.match(script, /exec dmthin-csi node --endpoint=unix:\/\/\/csi\/csi\.sock --node-id="\$NODE_NAME" --state-dir=\/var\/lib\/dmthin-csi --metrics-address=:8081/);
  assert.match(script, / --node-path-root=\/var\/lib\/kubelet /, 'the node service stages and publishes only under the kubelet directory');
  assert.deepEqual(driver.env, [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]);
});

test('per-node pools: one ConfigMap entry per node, replacing the default', async () => {
  const docs = await renderChart({ values: { pools: { nodes: {
    'worker-1.example': { dataDevice: '/dev/nvme0n1p1', metadataDevice: '/dev/nvme0n1p2', blockSize: '128Ki' },
    'worker-2': { name: 'adopted', existing: true },
    'worker-3': { loopDataSize: '64Gi', growMax: '512Gi' },
  } } } });
  const cm = docs.find((d) => d.object.kind === 'ConfigMap')!.object as any;
  assert.deepEqual(cm.data, {
    default: ' --pool-name=dmthin-pool --loop-data-size=256Gi --loop-metadata-size=1Gi --block-size=64Ki --default-fs=ext4 --overprovision-ratio=1',
    'worker-1.example': ' --pool-data-device=/dev/nvme0n1p1 --pool-metadata-device=/dev/nvme0n1p2 --block-size=128Ki',
    'worker-2': ' --pool-name=adopted --pool-existing',
    'worker-3': ' --loop-data-size=64Gi --pool-grow-max=512Gi',
  });
});

test('optional objects can be turned off', async () => {
  const docs = await renderChart({ values: { storageClasses: [], volumeSnapshotClass: { create: false }, metrics: { service: false } } });
  const kinds = new Set(docs.map((d) => d.object.kind));
  for (const k of ['StorageClass', 'VolumeSnapshotClass', 'Service']) assert.ok(!kinds.has(k), k);
  const def = await renderChart({ values: { storageClasses: [{ name: 'dmthin', isDefault: true }] } });
  const sc = def.find((d) => d.object.kind === 'StorageClass')!.object as any;
  assert.deepEqual(sc.metadata.annotations, { 'storageclass.kubernetes.io/is-default-class': 'true' });
});
