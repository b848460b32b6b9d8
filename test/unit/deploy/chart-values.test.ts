// The keys users set on every chart, through the real `helm template`: where each lands, that
// the defaults are safe (a non-root controller, no pool on control-plane nodes), that a values
// file leaving keys out (or nulling them) still renders, and that values.schema.json refuses
// typos.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { CHART_DIR, helmBinary, type RenderedDoc, renderChart, toManifest } from './render.ts';
import { unknownBuiltinFields, validateBuiltin } from './schema.ts';

type Any = any;
const find = (docs: RenderedDoc[], kind: string, name?: string): Any =>
  docs.find((d) => d.object.kind === kind && (name === undefined || (d.object.metadata as Any).name === name))?.object;
const podSpec = (docs: RenderedDoc[], kind: 'Deployment' | 'DaemonSet'): Any => find(docs, kind).spec.template.spec;

test('the controller pod runs nothing as root; the node plugin stays privileged', async () => {
  const docs = await renderChart();
  const spec = podSpec(docs, 'Deployment');
  assert.deepEqual(spec.securityContext, { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
  assert.equal(spec.containers.length, 5);
  for (const c of spec.containers) {
    assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } }, c.name);
  }
  const node = podSpec(docs, 'DaemonSet');
  assert.deepEqual(node.containers[0].securityContext, { privileged: true });
});

test('every liveness probe waits for a startup probe over the same endpoint, with minutes for a slow start', async () => {
  const docs = await renderChart();
  const probed = [...podSpec(docs, 'Deployment').containers, ...podSpec(docs, 'DaemonSet').containers].filter((c: Any) => c.livenessProbe);
  assert.deepEqual(probed.map((c: Any) => c.name), ['dmthin-csi', 'dmthin-csi', 'node-driver-registrar']);
  for (const c of probed) {
    assert.deepEqual(c.startupProbe?.httpGet, c.livenessProbe.httpGet, c.name);
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 300, `${c.name}: at least 5 min to start`);
  }
});

test('the node DaemonSet stays off control-plane nodes by default, and that can be undone', async () => {
  const spec = podSpec(await renderChart(), 'DaemonSet');
  assert.equal(spec.tolerations, undefined, 'no toleration, so tainted control planes are skipped');
  const terms = spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  assert.deepEqual(terms, [{ matchExpressions: [
    { key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' },
    { key: 'node-role.kubernetes.io/master', operator: 'DoesNotExist' },
  ] }]);
  const open = podSpec(await renderChart({ values: { node: { affinity: null, tolerations: [{ operator: 'Exists' }] } } }), 'DaemonSet');
  assert.equal(open.affinity, undefined);
  assert.deepEqual(open.tolerations, [{ operator: 'Exists' }]);
  const legacy = podSpec(await renderChart({ values: { node: { tolerateAllTaints: true } } }), 'DaemonSet');
  assert.deepEqual(legacy.tolerations, [{ operator: 'Exists' }], 'the deprecated key still works');
});

const EVERY_KEY = {
  imagePullSecrets: [{ name: 'regcred' }],
  image: { repository: 'registry.example/dmthin-csi', tag: '9.9.9', pullPolicy: 'Always' },
  sidecars: { provisioner: { extraArgs: ['--worker-threads=20'], resources: { limits: { memory: '64Mi' } } } },
  controller: {
    resources: { requests: { cpu: '10m', memory: '64Mi' } }, nodeSelector: { 'kubernetes.io/os': 'linux' },
    tolerations: [{ key: 'infra', operator: 'Exists', effect: 'NoSchedule' }], affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [
      { weight: 1, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'app.kubernetes.io/component': 'controller' } } } }] } },
    podAnnotations: { 'example.com/a': '1' }, podLabels: { team: 'storage' }, priorityClassName: 'high',
    extraArgs: ['--kube-api-qps=50'], extraEnv: [{ name: 'HTTPS_PROXY', value: 'http://proxy:3128' }],
  },
  node: {
    resources: { limits: { memory: '256Mi' } }, nodeSelector: { 'example.com/storage': 'true' },
    tolerations: [{ key: 'storage', operator: 'Exists' }], podAnnotations: { 'example.com/b': '2' }, podLabels: { team: 'storage' },
    priorityClassName: 'node-high', extraArgs: ['--skip-block-zeroing'], extraEnv: [{ name: 'DMTHIN_DM_INTERFACE', value: 'dmsetup' }],
  },
};

test('every per-component key lands in its pod, and the result still validates', async () => {
  const docs = await renderChart({ values: EVERY_KEY });
  for (const [kind, v] of [['Deployment', EVERY_KEY.controller], ['DaemonSet', EVERY_KEY.node]] as const) {
    const tpl = find(docs, kind).spec.template;
    const spec = tpl.spec;
    assert.deepEqual(spec.imagePullSecrets, [{ name: 'regcred' }], kind);
    assert.deepEqual(spec.nodeSelector, v.nodeSelector, kind);
    assert.deepEqual(spec.tolerations, v.tolerations, kind);
    assert.equal(spec.priorityClassName, v.priorityClassName, kind);
    assert.deepEqual(tpl.metadata.annotations, v.podAnnotations, kind);
    assert.equal(tpl.metadata.labels.team, 'storage', kind);
    const driver = spec.containers[0];
    assert.equal(driver.image, 'registry.example/dmthin-csi:9.9.9', kind);
    assert.equal(driver.imagePullPolicy, 'Always', kind);
    assert.deepEqual(driver.resources, v.resources, kind);
    assert.deepEqual(driver.env.at(-1), v.extraEnv[0], kind);
  }
  assert.deepEqual(podSpec(docs, 'Deployment').affinity, EVERY_KEY.controller.affinity);
  const ctl = podSpec(docs, 'Deployment').containers;
  assert.equal(ctl[0].args.at(-1), '--kube-api-qps=50');
  assert.equal(ctl[1].args.at(-1), '--worker-threads=20');
  assert.deepEqual(ctl[1].resources, { limits: { memory: '64Mi' } });
  assert.match(podSpec(docs, 'DaemonSet').containers[0].command[2], /\$\(cat "\$f"\) '--skip-block-zeroing'$/, 'after the pool flags, so it wins');
  for (const d of docs.filter((x) => x.object.kind === 'Deployment' || x.object.kind === 'DaemonSet')) {
    assert.deepEqual(await validateBuiltin(d.object), [], d.source);
    assert.deepEqual(unknownBuiltinFields(d.object), [], d.source);
  }
});

test('sections left out or nulled render as the defaults (bar the affinity and pool flags, which fall to none and the driver\'s)', async () => {
  const nulls = Object.fromEntries(['image', 'imagePullSecrets', 'sidecars', 'logLevel', 'controller', 'node', 'pools', 'storageClasses', 'volumeSnapshotClass', 'volumeGroupSnapshots', 'metrics'].map((k) => [k, null]));
  const trimmed = await renderChart({ values: nulls });
  const full = await renderChart();
  const strip = (docs: RenderedDoc[]) => docs.map((d) => {
    const o = structuredClone(d.object) as Any;
    if (o.kind === 'DaemonSet') delete o.spec.template.spec.affinity;
    if (o.kind === 'ConfigMap') delete o.data.default;
    return o;
  });
  assert.deepEqual(strip(trimmed), strip(full));
  assert.equal(find(trimmed, 'ConfigMap').data.default, '');
  assert.ok(toManifest(full).includes('runAsNonRoot: true'));
});

test('storageClasses is a list; an entry takes the defaults it leaves out; the old storageClass still works', async () => {
  const docs = await renderChart({ values: { storageClasses: [
    { name: 'fast', isDefault: true, allowVolumeExpansion: false, mountOptions: ['noatime'], parameters: { 'example.com/x': 'y' } },
    { name: 'xfs', fsType: 'xfs', reclaimPolicy: 'Retain' },
  ] } });
  const fast = find(docs, 'StorageClass', 'fast');
  assert.deepEqual(fast.metadata.annotations, { 'storageclass.kubernetes.io/is-default-class': 'true' });
  assert.equal(fast.allowVolumeExpansion, false);
  assert.deepEqual(fast.mountOptions, ['noatime']);
  assert.deepEqual(fast.parameters, { 'csi.storage.k8s.io/fstype': 'ext4', 'example.com/x': 'y' });
  const xfs = find(docs, 'StorageClass', 'xfs');
  assert.deepEqual([xfs.parameters['csi.storage.k8s.io/fstype'], xfs.reclaimPolicy, xfs.volumeBindingMode, xfs.allowVolumeExpansion, xfs.metadata.annotations],
    ['xfs', 'Retain', 'WaitForFirstConsumer', true, undefined]);
  assert.equal(find(docs, 'StorageClass', 'dmthin'), undefined, 'a list of yours replaces the default one');
  const legacy = await renderChart({ values: { storageClass: { create: true, name: 'old', fsType: 'xfs' } } });
  assert.deepEqual(legacy.filter((d) => d.object.kind === 'StorageClass').map((d) => (d.object.metadata as Any).name), ['old']);
  assert.equal((await renderChart({ values: { storageClass: { create: false } } })).filter((d) => d.object.kind === 'StorageClass').length, 0);
});

test('values.schema.json refuses unknown keys and wrong types', async () => {
  for (const [values, message] of [
    [{ node: { nodeSelecter: { a: 'b' } } }, /Additional property nodeSelecter is not allowed/],
    [{ pools: { default: { defaultFs: 'btrfs' } } }, /defaultFs must be one of the following/],
    [{ controller: { replicas: 'two' } }, /controller\.replicas: Invalid type/],
    [{ storageClasses: [{ fsType: 'xfs' }] }, /name is required/],
    [{ logLevel: 'trace' }, /logLevel must be one of the following/],
    [{ node: { extraArgs: ["--x='y'"] } }, /node\.extraArgs\.0: Does not match pattern/],
  ] as const) {
    await assert.rejects(renderChart({ values }), message, JSON.stringify(values));
  }
});

test('ServiceMonitors and PodMonitors: off by default, and when on they select what serves /metrics', async () => {
  assert.equal((await renderChart()).filter((d) => String(d.object.apiVersion).startsWith('monitoring.coreos.com')).length, 0);
  const docs = await renderChart({ values: { metrics: { serviceMonitor: { enabled: true, labels: { release: 'prom' } }, podMonitor: { enabled: true, interval: '15s' } } } });
  for (const component of ['controller', 'node']) {
    const sm = find(docs, 'ServiceMonitor', `dmthin-csi-${component}`);
    const svc = find(docs, 'Service', `dmthin-csi-${component}-metrics`);
    assert.equal(sm.metadata.labels.release, 'prom');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc.metadata.labels[k], v, `${component} Service carries ${k}`);
    assert.equal(sm.spec.endpoints[0].port, svc.spec.ports[0].name);
    const pm = find(docs, 'PodMonitor', `dmthin-csi-${component}`);
    const pod = find(docs, component === 'node' ? 'DaemonSet' : 'Deployment').spec.template;
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(pod.metadata.labels[k], v);
    assert.ok(pod.spec.containers[0].ports.some((p: Any) => p.name === pm.spec.podMetricsEndpoints[0].port));
    assert.equal(pm.spec.podMetricsEndpoints[0].interval, '15s');
  }
});

test('helm lint --strict passes', async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'dmthin-lint-'));
  try {
    const { stdout } = await promisify(execFile)(helmBinary(), ['lint', '--strict', CHART_DIR], { env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CACHE_HOME: home, XDG_CONFIG_HOME: home } });
    assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    assert.doesNotMatch(stdout, /\[(WARNING|ERROR)\]/);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
