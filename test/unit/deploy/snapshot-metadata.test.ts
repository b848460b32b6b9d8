// The chart's snapshotMetadata value: off, nothing of it renders; on, the sidecar beside the
// controller, its Service, Secret and SnapshotMetadataService (valid against upstream's CRD), the
// controller's channel token for the channel's audience and the nodes' channel settings.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { load } from 'js-yaml';
import { CHANNEL_AUDIENCE } from '../../../src/kube/channel/auth.ts';
import { DEFAULT_TOKEN_FILE } from '../../../src/cli/channel-config.ts';
import { sharedBin } from '../../realkernel/realkube/cluster.ts';
import { renderChart, ROOT } from './render.ts';
import { crdSchema, unknownBuiltinFields, unknownCrdFields, validateAgainstCrd, validateBuiltin } from './schema.ts';

// ../shared sits beside the checkout (or beside its worktree's parent): where shared/bin is.
const SMS_CRD = path.join(sharedBin(ROOT), '..', 'reference', 'external-snapshot-metadata-v1.1.0', 'cbt.storage.k8s.io_snapshotmetadataservices.yaml');
const smsCrd = () => load(readFileSync(SMS_CRD, 'utf8')) as Record<string, unknown>;
const TLS = { cert: 'Y2VydA==', key: 'a2V5', caCert: 'Y2E=' };
const on = (tls: object = TLS) => renderChart({ values: { snapshotMetadata: { enabled: true, tls } } });

const byKind = (docs: Awaited<ReturnType<typeof renderChart>>, kind: string) => docs.filter((d) => d.object.kind === kind).map((d) => d.object as any);

test('off by default: no sidecar, no channel, nothing of the feature rendered', async () => {
  const docs = await renderChart();
  assert.deepEqual(docs.filter((d) => /snapshot-metadata/.test(d.source)), []);
  const text = docs.map((d) => d.text).join('\n');
  for (const s of ['csi-snapshot-metadata', 'DMTHIN_CHANNEL', 'DMTHIN_SNAPSHOT_METADATA', 'channel-token']) assert.ok(!text.includes(s), s);
});

test('on: every object validates (SnapshotMetadataService against upstream\'s CRD)', async () => {
  const docs = await on();
  const sms = byKind(docs, 'SnapshotMetadataService');
  assert.equal(sms.length, 1);
  const schema = crdSchema(smsCrd(), 'v1beta1');
  assert.deepEqual(validateAgainstCrd(sms[0], schema), []);
  assert.deepEqual(unknownCrdFields(sms[0], schema, 'SnapshotMetadataService'), []);
  assert.deepEqual(sms[0].metadata.name, 'dmthin.csi.io', 'named after the driver');
  assert.deepEqual(sms[0].spec, { address: 'dmthin-csi-snapshot-metadata.kube-system:6443', caCert: TLS.caCert, audience: 'dmthin.csi.io/snapshot-metadata' });
  for (const d of docs) {
    if (d.object.kind === 'SnapshotMetadataService' || String(d.object.apiVersion).startsWith('snapshot.storage.k8s.io')) continue;
    assert.deepEqual(await validateBuiltin(d.object), [], d.source);
    assert.deepEqual(unknownBuiltinFields(d.object), [], d.source);
  }
  const svc = byKind(docs, 'Service').find((s) => s.metadata.name === 'dmthin-csi-snapshot-metadata');
  assert.deepEqual(svc.spec.ports, [{ name: 'snapshot-metadata', port: 6443, targetPort: 'snapshot-meta', protocol: 'TCP' }]);
  assert.equal(svc.spec.selector['app.kubernetes.io/component'], 'controller');
  assert.deepEqual(byKind(docs, 'Secret')[0].data, { 'tls.crt': TLS.cert, 'tls.key': TLS.key });
});

test('on: the sidecar shares the socket, the driver forwards with a channel-audience token, the nodes admit only the controller', async () => {
  const docs = await on();
  const pod = byKind(docs, 'Deployment')[0].spec.template.spec;
  const sidecar = pod.containers.find((c: any) => c.name === 'csi-snapshot-metadata');
  assert.equal(sidecar.image, 'registry.k8s.io/sig-storage/csi-snapshot-metadata:v1.1.0');
  assert.ok(sidecar.args.includes('--csi-address=/csi/csi.sock'));
  assert.ok(sidecar.volumeMounts.some((m: any) => m.name === 'socket-dir' && m.mountPath === '/csi'));
  const driver = pod.containers.find((c: any) => c.name === 'dmthin-csi');
  assert.ok(driver.env.some((e: any) => e.name === 'DMTHIN_SNAPSHOT_METADATA' && e.value === 'true'));
  const tokenFile = driver.env.find((e: any) => e.name === 'DMTHIN_CHANNEL_TOKEN_FILE').value;
  assert.equal(tokenFile, DEFAULT_TOKEN_FILE);
  const mount = driver.volumeMounts.find((m: any) => m.name === 'channel-token');
  const projected = pod.volumes.find((v: any) => v.name === 'channel-token').projected.sources[0].serviceAccountToken;
  assert.equal(`${mount.mountPath}/${projected.path}`, tokenFile);
  assert.equal(projected.audience, CHANNEL_AUDIENCE, 'a token the apiserver itself refuses');
  assert.equal(pod.volumes.find((v: any) => v.name === 'snapshot-metadata-tls').secret.secretName, 'dmthin-csi-snapshot-metadata-tls');
  const node = byKind(docs, 'DaemonSet')[0].spec.template.spec;
  const env = Object.fromEntries(node.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom.fieldRef.fieldPath]));
  assert.equal(env.DMTHIN_CHANNEL_CLIENT, `system:serviceaccount:kube-system:${byKind(docs, 'Deployment')[0].spec.template.spec.serviceAccountName}`);
  assert.equal(env.DMTHIN_CHANNEL_PORT, '9810');
  assert.equal(env.POD_IP, 'status.podIP');
});

test('on, with an existing TLS Secret: the chart makes none and mounts that one', async () => {
  const docs = await on({ existingSecret: 'my-tls', caCert: 'Y2E=', cert: '', key: '' });
  assert.deepEqual(byKind(docs, 'Secret'), []);
  const pod = byKind(docs, 'Deployment')[0].spec.template.spec;
  assert.equal(pod.volumes.find((v: any) => v.name === 'snapshot-metadata-tls').secret.secretName, 'my-tls');
});
