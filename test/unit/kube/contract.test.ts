// The contract others build against: the CRDs under deploy/crds, the API calls each
// component makes (the RBAC rules), and one active controller through a Lease.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { CoordinationV1Api, loadYaml } from '@kubernetes/client-node';
import { ControllerService } from '../../../src/controller/service.ts';
import { LeaderElector, leaderOnly } from '../../../src/kube/lease.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { createReq, CRD_FILES, deadline, MiB, until, world } from './harness.ts';

/** What the RBAC author grants (see the report); patch thinvolumes is the controller's expand. */
const CONTROLLER_RBAC = new Set([
  'get thinvolumes', 'list thinvolumes', 'watch thinvolumes', 'create thinvolumes', 'delete thinvolumes', 'patch thinvolumes',
  'get thinsnapshots', 'list thinsnapshots', 'watch thinsnapshots', 'create thinsnapshots', 'delete thinsnapshots',
  'get thinpools', 'list thinpools', 'watch thinpools', 'get leases', 'create leases', 'update leases', 'create events', 'patch events',
]);
const NODE_RBAC = new Set([
  ...['thinvolumes', 'thinsnapshots'].flatMap((r) => ['get', 'list', 'watch', 'update', 'patch'].map((v) => `${v} ${r}`)),
  ...['thinvolumes/status', 'thinsnapshots/status', 'thinpools/status'].flatMap((r) => ['get', 'update', 'patch'].map((v) => `${v} ${r}`)),
  'get thinpools', 'create thinpools', 'update thinpools', 'patch thinpools', 'create events', 'patch events', 'get nodes',
]);

function used(requests: ReadonlyArray<{ verb: string; path: string }>): Set<string> {
  const out = new Set<string>();
  for (const r of requests) {
    const m = /\/(?:apis\/[^/]+\/[^/]+|api\/v1)(?:\/namespaces\/[^/]+)?\/([a-z]+)(?:\/[^/]+(\/status)?)?$/.exec(r.path);
    if (m) out.add(`${r.verb} ${m[1]}${m[2] ?? ''}`);
  }
  return out;
}

describe('kube mode: contract', () => {
  it('ships structural v1 CRDs with status subresource and printer columns', () => {
    for (const f of CRD_FILES) {
      const crd = loadYaml(readFileSync(new URL(`../../../deploy/crds/${f}`, import.meta.url), 'utf8')) as {
        apiVersion: string; spec: { group: string; scope: string; versions: Array<{ name: string; subresources: { status: object }; additionalPrinterColumns: Array<{ name: string }>; schema: { openAPIV3Schema: { properties: { spec: { required: string[] } } } } }> };
      };
      assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
      assert.equal(crd.spec.group, 'dmthin.csi.io');
      assert.equal(crd.spec.scope, 'Cluster');
      const v = crd.spec.versions[0]!;
      assert.equal(v.name, 'v1alpha1');
      assert.ok(v.subresources.status);
      assert.deepEqual(v.additionalPrinterColumns.slice(0, 4).map((c) => c.name), ['Node', 'Size', 'State', 'Age']);
      assert.ok(v.schema.openAPIV3Schema.properties.spec.required.includes('nodeName'));
      assert.doesNotMatch(readFileSync(new URL(`../../../deploy/crds/${f}`, import.meta.url), 'utf8'), /x-kubernetes-validations/);
    }
  });

  it('the controller and the agent use only the API calls their RBAC grants', async () => {
    const w = await world();
    try {
      await w.startNode('n1'); // leaves a ThinPool with status behind
      await w.stopNode('n1');
      w.d.requests.length = 0;
      // Controller alone (no agent): everything it does waits in vain, but every call is recorded.
      await w.controller.CreateVolume(deadline(200), createReq('x1', { node: 'n1' })).catch(() => undefined);
      await w.controller.DeleteVolume(deadline(200), { volume_id: w.d.objects('thinvolumes.dmthin.csi.io')[0]!.metadata!.name!, secrets: {} } as never).catch(() => undefined);
      const controllerOnly = used(w.d.requests);
      w.d.requests.length = 0;
      // The agent alone: startup, the pending objects, a resync.
      const kn = await w.startNode('n1');
      await until(() => w.d.objects('thinvolumes.dmthin.csi.io').length === 0, 'pending delete finished');
      await new Promise((r) => setTimeout(r, 400));
      await kn.store.updateDevice('vol-00000000000000000000000000000000', () => undefined).catch(() => undefined);
      const agentOnly = used(w.d.requests);
      w.d.requests.length = 0;
      // Everything else, mixed.
      const id = (await w.controller.CreateVolume(deadline(), createReq('x2', { node: 'n1' }))).volume!.volume_id!;
      await w.controller.ControllerExpandVolume(deadline(), { volume_id: id, capacity_range: { required_bytes: String(100 * MiB), limit_bytes: '0' }, volume_capability: null, secrets: {} } as never);
      await w.controller.GetCapacity(deadline(), { volume_capabilities: [], parameters: {}, accessible_topology: null } as never);
      const mixed = used(w.d.requests);
      if (process.env.SHOW_CALLS) console.log({ controllerOnly: [...controllerOnly].sort(), agentOnly: [...agentOnly].sort(), mixed: [...mixed].sort() });
      assert.deepEqual([...controllerOnly].filter((c) => !CONTROLLER_RBAC.has(c)), []);
      assert.deepEqual([...agentOnly].filter((c) => !NODE_RBAC.has(c)), []);
      assert.deepEqual([...mixed].filter((c) => !CONTROLLER_RBAC.has(c) && !NODE_RBAC.has(c)), []);
    } finally {
      await w.close();
    }
  });

  it('one active controller: a non-leader answers UNAVAILABLE until the lease expires', async () => {
    const w = await world();
    try {
      const coord = w.d.kubeConfig().makeApiClient(CoordinationV1Api);
      const opts = { namespace: 'kube-system', name: 'dmthin-csi-controller', leaseDurationSeconds: 1, renewMs: 100, log: silentLogger() };
      const a = new LeaderElector(coord, { ...opts, identity: 'a' });
      const b = new LeaderElector(coord, { ...opts, identity: 'b' });
      await a.start();
      await b.start();
      assert.equal(a.isLeader, true);
      assert.equal(b.isLeader, false);
      const svc = leaderOnly(new ControllerService(w.backend, { fsType: 'ext4' }), b);
      await assert.rejects(async () => svc.CreateVolume(deadline(), createReq('l1')), (e: { code: number }) => e.code === Code.UNAVAILABLE);
      assert.ok((svc.ControllerGetCapabilities().capabilities ?? []).length > 0);
      a.stop();
      await until(() => b.isLeader, 'b takes over', 5000);
      b.stop();
      const lease = w.d.object('leases.coordination.k8s.io', 'dmthin-csi-controller', 'kube-system') as { spec: { holderIdentity: string; leaseTransitions: number } };
      assert.equal(lease.spec.holderIdentity, 'b');
      assert.equal(lease.spec.leaseTransitions, 1);
    } finally {
      await w.close();
    }
  });
});
