// The README's install, upgrade and uninstall with the real Helm (v3.7.1, ../shared/bin) against
// the real kube-apiserver v1.26.4 on this host: `helm install` creates the CRDs and every object
// and prints NOTES.txt; `helm upgrade --reuse-values` applies a change; `helm uninstall` removes
// the chart's objects and leaves the CRDs and their objects, as the README says. Nothing runs
// the pods (no kubelet): what they do is the real-kernel suites' part.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { loadAll } from 'js-yaml';
import { writeKubeconfig } from '../../realkernel/realkube/chart.ts';
import { ControlPlane, sharedBin } from '../../realkernel/realkube/cluster.ts';
import { pathOf } from '../../realkernel/realkube/http.ts';
import { CHART_DIR, helmBinary, ROOT } from './render.ts';

const run = promisify(execFile);
const CRD = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const DEPLOYMENT = '/apis/apps/v1/namespaces/kube-system/deployments/dmthin-csi-controller';

describe('helm install, upgrade and uninstall on a real kube-apiserver', { concurrency: false }, () => {
  it('v1.26.4: deployed with NOTES; upgrade applies; uninstall leaves the CRDs and their objects', { timeout: 180_000 }, async () => {
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
