// The chart on both real kube-apiservers of ../shared/bin, on this host (no VM, a few seconds
// each): v1.26.4, the default, and v1.24.0, the oldest (its CEL only behind a feature gate).
// Every CRD and rendered object is accepted, and the CRDs' CEL rules are stored and enforced:
// 1.24's cost estimator refuses some rule forms 1.26 takes, which is why the rules are written
// as they are. The whole flow against the sidecars runs in test/realkernel/realkube.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { installChart } from '../../realkernel/realkube/chart.ts';
import { ControlPlane, sharedBin } from '../../realkernel/realkube/cluster.ts';
import { ROOT } from './render.ts';

const CR = '/apis/dmthin.csi.io/v1alpha1/thinvolumes';

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
});
