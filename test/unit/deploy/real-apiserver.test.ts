// The chart on both real kube-apiservers of ../shared/bin, on this host (no VM, a few seconds
// each): v1.26.4, the default, and v1.24.0, the oldest (its CEL only behind a feature gate).
// Every CRD and rendered object is accepted, and the CRDs' CEL rules are stored and enforced:
// 1.24's cost estimator refuses some rule forms 1.26 takes, which is why the rules are written
// as they are. The whole flow against the sidecars runs in test/realkernel/realkube.test.ts.
// Last, the README's install, upgrade and uninstall with the real Helm (v3.7.1): `helm install`
// creates the CRDs and every object and prints NOTES.txt; `helm upgrade --reuse-values` applies a
// change; `helm uninstall` removes the chart's objects and leaves the CRDs and their objects.
// Between them the getting-started manifests of deploy/examples/ are created with strict field
// validation (no kubelet or scheduler runs them). In one file with the above, so that one
// process at a time unpacks ../shared/bin.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { loadAll } from 'js-yaml';
import { installChart, writeKubeconfig } from '../../realkernel/realkube/chart.ts';
import { ControlPlane, sharedBin } from '../../realkernel/realkube/cluster.ts';
import { type KubeHttp, pathOf } from '../../realkernel/realkube/http.ts';
import { CHART_DIR, helmBinary, ROOT } from './render.ts';

const run = promisify(execFile);
const CRD = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const DEPLOYMENT = '/apis/apps/v1/namespaces/kube-system/deployments/dmthin-csi-controller';

const CR = '/apis/dmthin.csi.io/v1alpha1/thinvolumes';

/** The getting-started manifests, as `kubectl apply` sends them, with strict field validation. */
async function createExamples(api: KubeHttp): Promise<void> {
  await api.request('POST', '/api/v1/namespaces/default/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
  for (const f of ['storageclass-xfs.yaml', 'pvc-pod.yaml', 'snapshot.yaml', 'restore.yaml']) {
    for (const o of loadAll(readFileSync(join(ROOT, 'deploy', 'examples', f), 'utf8')).filter(Boolean) as Array<{ apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }>) {
      if (o.kind !== 'StorageClass') o.metadata.namespace = 'default';
      const r = await api.request('POST', `${pathOf(o, false)}?fieldValidation=Strict`, o);
      assert.equal(r.status, 201, `${f}: ${o.kind} ${o.metadata.name}: ${JSON.stringify(r.body.message)}`);
    }
  }
  const typo = await api.request('POST', '/api/v1/namespaces/default/persistentvolumeclaims?fieldValidation=Strict',
    { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'typo' }, spec: { storageClassNam: 'dmthin', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } });
  assert.equal(typo.status, 400, 'the strict check refuses an unknown field');
}

describe('the chart on real kube-apiservers', { concurrency: false }, () => {
  for (const [exe, version] of [['kube-apiserver', 'v1.26.4'], ['kube-apiserver-1.24', 'v1.24.0']] as const) {
    it(`${version}: accepts every object and enforces the CRDs' rules`, { timeout: 180_000 }, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dmthin-apiserver-'));
      const base = 20000 + Math.floor(Math.random() * 20000);
      const p = new ControlPlane({ root: ROOT, dir: join(dir, 'plane'), logs: join(dir, 'logs'), apiserver: exe, etcdPort: base, apiPort: base + 2 });
      try {
        await p.start();
        assert.match((await p.admin.get('/version')).gitVersion, new RegExp(`^${version.replace(/\./g, '\\.')}`));
        const objs = await installChart(p.admin, ROOT, join(sharedBin(ROOT), '..', 'reference', 'external-snapshotter-v8.6.0-crds'));
        assert.equal(objs.length, 16);
        const crd = await p.admin.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/thinvolumes.dmthin.csi.io');
        assert.equal(crd.spec.versions[0].schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'].length, 6, 'rules stored, not dropped');
        await p.admin.create(CR, { apiVersion: 'dmthin.csi.io/v1alpha1', kind: 'ThinVolume', metadata: { name: 'v1' },
          spec: { nodeName: 'n1', sizeBytes: 100, accessType: 'mount', fsType: 'ext4', csiName: 'x' } });
        const patch = (body: object) => p.admin.request('PATCH', `${CR}/v1`, body, 'application/merge-patch+json');
        for (const [body, message] of [[{ spec: { nodeName: 'n2' } }, 'spec.nodeName is immutable'], [{ spec: { sizeBytes: 50 } }, 'spec.sizeBytes can only grow'],
          [{ spec: { fsType: null } }, 'spec.fsType is immutable'], [{ spec: { source: { kind: 'volume', name: 'a' } } }, 'spec.source is immutable']] as const) {
          const r = await patch(body);
          assert.equal(r.status, 422, JSON.stringify(body));
          assert.ok(String(r.body.message).includes(message), r.body.message);
        }
        assert.equal((await patch({ spec: { sizeBytes: 200 } })).status, 200);
        // v1 is as the previous release made it (no size, no claim); v2 as this one makes it.
        await p.admin.create(CR, { apiVersion: 'dmthin.csi.io/v1alpha1', kind: 'ThinVolume', metadata: { name: 'v2' },
          spec: { nodeName: 'n1', sizeBytes: 1073741824, size: '1Gi', accessType: 'mount', fsType: 'ext4', csiName: 'pvc-2', claim: { pvName: 'pvc-2', pvcName: 'data', pvcNamespace: 'shop' } } });
        const r = await p.admin.request('PATCH', `${CR}/v2`, { spec: { claim: { pvcName: 'other' } } }, 'application/merge-patch+json');
        assert.equal(r.status, 422);
        assert.ok(String(r.body.message).includes('spec.claim is immutable'), r.body.message);
        assert.equal((await p.admin.request('PATCH', `${CR}/v2`, { spec: { sizeBytes: 2147483648, size: '2Gi' } }, 'application/merge-patch+json')).status, 200);
        const table = (await p.admin.table(CR, false)).split('\n').map((l) => l.trim().split(/\s{3,}/));
        assert.deepEqual(table.map((cells) => cells.filter((_, i) => i !== 5)), [
          ['NAME', 'NODE', 'SIZE', 'STATE', 'PVC', 'REASON'], ['v1', 'n1', '<none>', '<none>', '<none>', '<none>'], ['v2', 'n1', '2Gi', '<none>', 'data', '<none>'],
        ], 'AGE left out');
      } finally {
        await p.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('v1.26.4: helm install prints NOTES, helm upgrade --reuse-values applies, helm uninstall leaves the CRDs and their objects', { timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmthin-helm-install-'));
    const base = 20000 + Math.floor(Math.random() * 20000);
    const p = new ControlPlane({ root: ROOT, dir: join(dir, 'plane'), logs: join(dir, 'logs'), apiserver: 'kube-apiserver', etcdPort: base, apiPort: base + 2 });
    try {
      await p.start();
      const snapshotCrds = join(sharedBin(ROOT), '..', 'reference', 'external-snapshotter-v8.6.0-crds');
      for (const f of readdirSync(snapshotCrds).filter((x) => x.startsWith('snapshot.storage.k8s.io_'))) {
        for (const crd of loadAll(readFileSync(join(snapshotCrds, f), 'utf8')).filter(Boolean) as Array<{ apiVersion: string; kind: string; metadata: { name: string } }>) {
          await p.admin.create(pathOf(crd, false), crd);
        }
      }
      const kubeconfig = writeKubeconfig(join(dir, 'kubeconfig'), p.apiUrl, p.admin.token, 'admin');
      const env = { PATH: process.env.PATH ?? '', HOME: dir, XDG_CACHE_HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir, KUBECONFIG: kubeconfig };
      const helm = async (...args: string[]) => (await run(helmBinary(), args, { env, maxBuffer: 16 << 20 })).stdout;

      const installed = await helm('install', 'dmthin-csi', CHART_DIR, '--namespace', 'kube-system', '--set', 'image.repository=registry.example.com/dmthin-csi');
      assert.match(installed, /STATUS: deployed/);
      assert.match(installed, /exec ds\/dmthin-csi-node -c dmthin-csi -- dmthin-csi doctor/, 'NOTES.txt printed');
      const dep = await p.admin.get(DEPLOYMENT);
      assert.equal(dep.spec.template.spec.containers[0].image, 'registry.example.com/dmthin-csi:0.1.0');
      assert.equal(dep.spec.template.spec.securityContext.runAsNonRoot, true);
      for (const name of ['thinvolumes', 'thinsnapshots', 'thinpools', 'thingroupsnapshots']) await p.admin.get(`${CRD}/${name}.dmthin.csi.io`);
      await p.admin.get('/apis/storage.k8s.io/v1/storageclasses/dmthin');
      await p.admin.get('/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/dmthin');

      await createExamples(p.admin);
      await p.admin.create('/apis/dmthin.csi.io/v1alpha1/thinpools', { apiVersion: 'dmthin.csi.io/v1alpha1', kind: 'ThinPool', metadata: { name: 'n1' }, spec: { nodeName: 'n1', poolName: 'dmthin-pool' } });
      const upgraded = await helm('upgrade', 'dmthin-csi', CHART_DIR, '--namespace', 'kube-system', '--reuse-values', '--set', 'controller.replicas=2');
      assert.match(upgraded, /REVISION: 2/);
      assert.equal((await p.admin.get(DEPLOYMENT)).spec.replicas, 2);
      assert.equal((await p.admin.get(DEPLOYMENT)).spec.template.spec.containers[0].image, 'registry.example.com/dmthin-csi:0.1.0', 'reused values kept');

      await helm('uninstall', 'dmthin-csi', '--namespace', 'kube-system');
      assert.equal((await p.admin.request('GET', DEPLOYMENT)).status, 404);
      assert.equal((await p.admin.request('GET', '/apis/storage.k8s.io/v1/storageclasses/dmthin')).status, 404);
      assert.equal((await p.admin.request('GET', `${CRD}/thinvolumes.dmthin.csi.io`)).status, 200, 'Helm never deletes the CRDs of crds/');
      assert.equal((await p.admin.request('GET', '/apis/dmthin.csi.io/v1alpha1/thinpools/n1')).status, 200, 'nor their objects');
    } finally {
      await p.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
