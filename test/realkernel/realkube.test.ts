/**
 * Real Kubernetes parts around processes the test starts itself, in the VM: etcd + the real
 * kube-apiserver (RBAC, audit log), the chart's objects, our controller and node agent with the
 * chart's command lines as the chart's ServiceAccounts, and the real external-provisioner,
 * snapshot-controller, csi-snapshotter and external-resizer. It keeps what needs processes the test
 * controls: the node agent SIGKILLed mid-provision, the apiserver restarted after an etcd compaction,
 * a second controller replica taking over; the test does what the absent scheduler,
 * kube-controller-manager and kubelet would (./realkube/kubelet.ts). What a real node does with the
 * driver (helm install, pods, snapshots, expansion, the kubelet) is cluster.test.ts's.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { poolThinIds, ROOT, LOGS } from './harness.ts';
import { summarize } from './realkube/audit.ts';
import { NS, RELEASE } from './realkube/chart.ts';
import { realkubeCache } from './realkube/cluster.ts';
import { ClusterDuties, PVC_NS, type Bound } from './realkube/kubelet.ts';
import { gatedSteps, RealKube, RUN, until } from './realkube/world.ts';

const NODE = 'rk-worker-1';
const POOL = 'dmthin-pool'; // the chart's default pool flags, as rendered
const STATE_DIR = '/var/lib/dmthin-csi';
const CR = '/apis/dmthin.csi.io/v1alpha1';
const SIDECARS = ['csi-provisioner', 'csi-snapshotter', 'csi-resizer'];
/** Flags these sidecar versions need instead of the chart's (README: "Real Kubernetes"). */
// Leader election as the chart has it, with client-go's deadlines stretched: in the emulated guest one
// API call can take seconds, and a sidecar that misses its 10 s renew deadline exits.
const SLOW_LEASES = { 'leader-election-lease-duration': ['--leader-election-lease-duration=40s', '--leader-election-renew-deadline=30s'] };
const OVERRIDES: Record<string, Record<string, string[]>> = {
  // No pod or ReplicaSet owns the process here, so capacity objects get no owner; poll often so the test sees changes.
  'csi-provisioner': { 'capacity-ownerref-level': ['--capacity-ownerref-level=-1'], 'capacity-poll-interval': ['--capacity-poll-interval=5s'], ...SLOW_LEASES },
  'csi-snapshotter': SLOW_LEASES,
  'csi-resizer': SLOW_LEASES,
};

const w = new RealKube({ root: ROOT, logs: join(LOGS, 'realkube'), node: NODE });
const k = new ClusterDuties(w.api, NODE);
const t0 = Date.now();
const mark = (what: string) => console.log(`realkube: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
const bound: Record<string, Bound> = {};

async function crs(plural: string): Promise<any[]> { return (await w.api.get(`${CR}/${plural}`)).items; }

async function provision(name: string, size: string, dataSource?: { kind: string; name: string; apiGroup?: string }): Promise<Bound> {
  await k.createPvc(name, size, dataSource);
  bound[name] = await k.bind(name);
  return bound[name];
}

const step = gatedSteps();

describe('real Kubernetes: kube-apiserver + etcd + the real CSI sidecars + controller + node agent + real pool', { timeout: 3_000_000 }, () => {
  before(async () => {
    await w.install(realkubeCache(ROOT, 'crds'));
    mark('control plane ready, chart installed');
  });
  after(async () => {
    await w.stop();
    mark('stopped');
  });

  step('runs the chart\'s pods as its ServiceAccounts; the node registers as kubelet would', async () => {
    await w.registerNode();
    w.startNodeAgent();
    w.startControllerPod('controller-a', ['dmthin-csi', ...SIDECARS], OVERRIDES);
    w.startSnapshotController();
    await until('node agent ready', () => w.probe(w.nodeSocket));
    await w.registerPlugin();
    await until('controller ready', () => w.probe(join(RUN, 'controller-a', 'csi.sock')));
    const pool = await w.api.get(`${CR}/thinpools/${NODE}`);
    assert.equal(pool.spec.nodeName, NODE);
    const lease = await w.api.get(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/dmthin-csi-controller`).catch(() => undefined);
    mark(`pods running (driver lease holder ${lease?.spec?.holderIdentity})`);
  });

  step('converges when the node agent is SIGKILLed while a claim provisions', async () => {
    await k.createPvc('killed', '512Mi');
    await until('ThinVolume made for the claim', async () => (await crs('thinvolumes')).length === 1);
    await w.nodeAgent!.kill(); // kubelet restarts the container, as this one does
    bound.killed = await k.bind('killed');
    await until('node agent back', () => w.probe(w.nodeSocket));
    w.reconnectNode();
    const tv = await w.api.get(`${CR}/thinvolumes/${bound.killed.handle}`);
    assert.equal(tv.status.state, 'Created');
    mark('agent kill mid-provision');
  });

  step('keeps working when the apiserver restarts under the watches, after an etcd compaction (410 Gone for old versions)', async () => {
    const rv = (await w.api.get(`${CR}/thinvolumes`)).metadata.resourceVersion;
    await w.api.create(`/api/v1/namespaces/${PVC_NS}/configmaps`, { metadata: { name: 'after-rv' } }); // so the compaction passes rv
    await w.plane.compactEtcd();
    const restartedAt = new Date();
    await w.plane.restartApiserver();
    const gone = await w.api.request('GET', `${CR}/thinvolumes?watch=1&resourceVersion=${rv}&timeoutSeconds=1`);
    assert.ok(gone.status === 410 || JSON.stringify(gone.body).includes('"code":410'), `watch from a compacted version: ${gone.status} ${JSON.stringify(gone.body).slice(0, 200)}`);
    mark('apiserver restarted');
    await provision('after-restart', '256Mi');
    const relisted = w.plane.auditEvents().filter((e) => e.user.username === `system:serviceaccount:${NS}:${RELEASE}-node` && e.verb === 'list'
      && e.objectRef?.resource === 'thinvolumes' && new Date((e as any).requestReceivedTimestamp) > restartedAt);
    assert.ok(relisted.length > 0, 'the agent listed ThinVolumes again after the restart');
    await assertConverged();
    mark('claim bound after the restart');
  });

  step('hands over to a second controller replica when the leader is killed', async () => {
    w.startControllerPod('controller-b', ['dmthin-csi', ...SIDECARS], { ...OVERRIDES, 'dmthin-csi': { 'metrics-address': ['--metrics-address=:8082'] } });
    await until('standby controller ready', () => w.probe(join(RUN, 'controller-b', 'csi.sock')));
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/dmthin-csi-controller`;
    assert.equal((await w.api.get(leasePath)).spec.holderIdentity, 'controller-a');
    for (const c of w.pods['controller-a']!) await c.kill(true);
    await provision('after-failover', '256Mi');
    assert.equal((await w.api.get(leasePath)).spec.holderIdentity, 'controller-b');
    mark('failover');
  });

  step('deletes every claim: no ThinVolume, device or finalizer left', async () => {
    for (const b of Object.values(bound)) await k.deletePvc(b);
    await until('ThinVolumes and ThinSnapshots gone', async () => (await crs('thinvolumes')).length + (await crs('thinsnapshots')).length === 0);
    assert.deepEqual((await w.api.get('/api/v1/persistentvolumes')).items, []);
    assert.deepEqual(poolThinIds(POOL, STATE_DIR), []);
    mark('all deleted');
  });

  // Not gated on the steps before: whatever ran, the server's record of it must show no denial.
  it('every request of the chart\'s ServiceAccounts was allowed by the real RBAC; lists the grants never used', () => {
    const s = summarize(w.plane.auditEvents(), w.objs, [`${RELEASE}-controller`, `${RELEASE}-node`]);
    assert.ok(s.requests > 100, `audit log holds our requests (${s.requests})`);
    assert.deepEqual(s.denied, []);
    // Right after the restart the server answers before its RBAC caches are in: it marks those itself.
    console.log(`realkube: ${s.requests} requests audited; ${s.deniedEarly.length} refused while the restarted apiserver was not yet ready:\n  ${s.deniedEarly.join('\n  ')}`);
    const lines = [...s.unused].map(([sa, verbs]) => `${sa}: ${verbs.join(', ') || '(none)'}`);
    const used = [...s.used].flatMap(([sa, m]) => [...m].map(([verb, agents]) => `${sa}\t${verb}\t${[...agents].join(',')}`)).sort();
    writeFileSync(join(LOGS, 'realkube', 'rbac-usage.txt'), `granted but never used:\n${lines.join('\n')}\n\nused:\n${used.join('\n')}\n`);
    console.log(`realkube: RBAC granted but never used:\n  ${lines.join('\n  ')}`);
  });
});

async function assertConverged(): Promise<void> {
  const all = [...await crs('thinvolumes'), ...await crs('thinsnapshots')];
  assert.deepEqual(all.filter((o) => !['Created', 'Activated', 'Deactivated', 'Resumed'].includes(o.status?.state)).map((o) => `${o.metadata.name}:${o.status?.state}`), []);
  assert.deepEqual(poolThinIds(POOL, STATE_DIR).sort((a, b) => a - b), all.map((o) => o.status.deviceId).sort((a: number, b: number) => a - b), 'pool thin ids == resources\' device ids');
}
