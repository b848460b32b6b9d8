// The contract others build against: the CRDs under deploy/crds, the API calls each
// component makes (the RBAC rules), and one active controller through a Lease.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { CoordinationV1Api, loadYaml } from '@kubernetes/client-node';
import { ControllerService } from '../../../src/controller/service.ts';
import { leaderOnly } from '../../../src/csi/leader-only.ts';
import { LeaderElector } from '../../../src/kube/lease.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { capacityReq, deleteVolumeReq, expandReq } from '../../support/requests.ts';
import { createReq, CRD_FILES, deadline, MiB, until, world } from './harness.ts';
import { renderChart } from '../deploy/render.ts';
import { sleep } from '../../../src/system/delay.ts';

type Rule = { apiGroups?: string[]; resources?: string[]; verbs?: string[] };

/** "verb resource" pairs the rendered chart grants in the named (Cluster)Roles: the RBAC that ships. */
async function granted(roleNames: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const doc of await renderChart()) {
    const o = doc.object as { kind?: string; metadata?: { name?: string }; rules?: Rule[] };
    if ((o.kind !== 'ClusterRole' && o.kind !== 'Role') || !roleNames.includes(o.metadata?.name ?? '')) continue;
    for (const r of o.rules ?? []) for (const res of r.resources ?? []) for (const v of r.verbs ?? []) out.add(`${v} ${res}`);
  }
  return out;
}

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
      // A group snapshot has no size of its own (its members have theirs); a pool shows its health.
      const columns = f.includes('thingroupsnapshots') ? ['Node', 'State', 'Age'] : f.includes('thinpools') ? ['Node', 'Size', 'Used', 'Capacity', 'Health', 'Age'] : ['Node', 'Size', 'State'];
      assert.deepEqual(v.additionalPrinterColumns.slice(0, columns.length).map((c) => c.name), columns);
      assert.ok(v.schema.openAPIV3Schema.properties.spec.required.includes('nodeName'));
      // Immutability rules (CEL, evaluated in test/unit/deploy/crd-rules.test.ts) guard the spec.
      assert.match(readFileSync(new URL(`../../../deploy/crds/${f}`, import.meta.url), 'utf8'), /x-kubernetes-validations/);
    }
  });

  it('the controller and the agent use only the API calls the chart RBAC grants them', async () => {
    const CONTROLLER_RBAC = await granted(['dmthin-csi-controller', 'dmthin-csi-controller-leader-election']);
    const NODE_RBAC = await granted(['dmthin-csi-node']);
    const w = await world();
    try {
      await w.startNode('n1'); // leaves a ThinPool with status behind
      await w.stopNode('n1');
      w.d.requests.length = 0;
      // Controller alone (no agent): everything it does waits in vain, but every call is recorded.
      await w.controller.CreateVolume(deadline(2000), createReq('x1', { node: 'n1' })).catch(() => undefined);
      await w.controller.DeleteVolume(deadline(2000), deleteVolumeReq(w.d.objects('thinvolumes.dmthin.csi.io')[0]!.metadata!.name!)).catch(() => undefined);
      const controllerOnly = used(w.d.requests);
      w.d.requests.length = 0;
      // The agent alone: startup, the pending objects, a resync.
      const kn = await w.startNode('n1');
      await until(() => w.d.objects('thinvolumes.dmthin.csi.io').length === 0, 'pending delete finished');
      await sleep(400);
      await kn.store.updateDevice('vol-00000000000000000000000000000000', () => undefined).catch(() => undefined);
      const agentOnly = used(w.d.requests);
      w.d.requests.length = 0;
      // Everything else, mixed.
      const id = (await w.controller.CreateVolume(deadline(), createReq('x2', { node: 'n1' }))).volume!.volume_id!;
      await w.controller.GetCapacity(deadline(), capacityReq());
      const mixed = used(w.d.requests);
      // Expansion with the agent stopped, so every call recorded is the controller's own.
      await w.stopNode('n1');
      w.d.requests.length = 0;
      await w.controller.ControllerExpandVolume(deadline(2000), expandReq({ volume_id: id, capacity_range: { required_bytes: 100 * MiB, limit_bytes: 0 } })).catch(() => undefined);
      const expand = used(w.d.requests);
      assert.ok(expand.has('patch thinvolumes'), 'expansion patches the ThinVolume');
      assert.deepEqual([...expand].filter((c) => !CONTROLLER_RBAC.has(c)), []);
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
      assert.equal(b.readiness().ready, true, 'a standby that reaches the API server is ready');
      const lease = () => w.d.object('leases.coordination.k8s.io', 'dmthin-csi-controller', 'kube-system') as { spec: { holderIdentity: string; leaseTransitions: number } };
      await a.stop();
      assert.equal(lease().spec.holderIdentity, '', 'a leader that stops hands the lease back');
      await until(() => b.isLeader, 'b takes over', 5000);
      assert.equal(lease().spec.leaseTransitions, 1);
      // A crashed leader never renews: c takes the lease once and stops ticking; d waits out the duration.
      await b.stop();
      const c = new LeaderElector(coord, { ...opts, identity: 'c' });
      await c.tick();
      assert.equal(c.isLeader, true);
      const d = new LeaderElector(coord, { ...opts, identity: 'd' });
      await d.start();
      assert.equal(d.isLeader, false, 'the crashed holder\'s lease has not expired yet');
      await until(() => d.isLeader, 'd takes over after expiry', 5000);
      await d.stop();
    } finally {
      await w.close();
    }
  });

  it('a lone leader keeps its lease when lease calls take longer than the renew interval', async () => {
    const w = await world();
    try {
      const real = w.d.kubeConfig().makeApiClient(CoordinationV1Api);
      let inFlight = 0;
      let most = 0;
      // Every lease call takes 150 ms, three renew intervals: ticks must not overlap (a late write would 409).
      const slow = new Proxy(real, { get: (t, prop, recv) => {
        const v = Reflect.get(t, prop, recv) as unknown;
        if (typeof v !== 'function') return v;
        return async (...args: unknown[]) => {
          most = Math.max(most, ++inFlight);
          try {
            await sleep(150);
            return await (v as (...a: unknown[]) => Promise<unknown>).apply(t, args);
          } finally {
            inFlight--;
          }
        };
      } });
      const a = new LeaderElector(slow, { namespace: 'kube-system', name: 'slow', identity: 'a', leaseDurationSeconds: 5, renewMs: 50, log: silentLogger() });
      await a.start();
      let flapped = false;
      for (let i = 0; i < 30; i++) {
        await sleep(40);
        if (!a.isLeader) flapped = true;
      }
      await a.stop();
      assert.equal(most, 1, 'one lease call at a time');
      assert.equal(flapped, false, 'never lost leadership');
    } finally {
      await w.close();
    }
  });

  it('a controller that cannot reach the API server reports not ready, with the reason', async () => {
    const w = await world();
    const coord = w.d.kubeConfig().makeApiClient(CoordinationV1Api);
    await w.close(); // the address now refuses connections
    const e = new LeaderElector(coord, { namespace: 'kube-system', name: 'x', identity: 'e', leaseDurationSeconds: 1, log: silentLogger() });
    await e.tick();
    const r = e.readiness();
    assert.equal(r.ready, false);
    assert.match(r.reason ?? '', /no answer from the Kubernetes API server.*ECONNREFUSED|no answer from the Kubernetes API server/);
    await e.stop();
  });
});
