/**
 * A real one-node cluster in the VM (./realcluster): etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler, containerd and a kubelet. The driver goes in with `helm install` of the chart, the
 * snapshot CRDs and snapshot-controller as a cluster ships them; pods use its volumes through PVCs
 * and VolumeSnapshots. Nothing here plays a cluster component: the scheduler picks the node from
 * CSIStorageCapacity, the PV controller binds, the kubelet stages and publishes through the node
 * plugin's container (registered by node-driver-registrar), expands, reconstructs after its restart.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LOGS, poolThinIds, ROOT } from './harness.ts';
import { summarize } from './realkube/audit.ts';
import { realkubeCache, type AuditEvent } from './realkube/cluster.ts';
import { gatedSteps, until } from './realkube/world.ts';
import { Cluster } from './realcluster/cluster.ts';
import { helmInstall, installSnapshotSupport, NS, RELEASE, releaseObjects, rolledOut, suiteFile } from './realcluster/install.ts';
import { removeLeftPool } from './realcluster/node.ts';
import { DRIVER, kubeletMounts, stagingDirs, Workload } from './realcluster/workload.ts';

const NODE = 'rc-node';
const TOPOLOGY_KEY = 'dmthin.csi.io/node';
const CR = '/apis/dmthin.csi.io/v1alpha1';
const POOL = 'dmthin-pool'; // the chart's default pool
const STATE_DIR = '/var/lib/dmthin-csi';
const GiB = 1024 ** 3;
const REGISTERED = `Register new plugin with name: ${DRIVER} `;
const logs = join(LOGS, 'realcluster');
const c = new Cluster({ root: ROOT, logs, node: NODE });
const u = new Workload(c.api);
const t0 = Date.now();
const mark = (what: string) => console.log(`realcluster: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);

/** Writes data.txt once, then appends a counter to log (fsynced) and prints df of /data every second. */
const WRITER = 'echo "written before the snapshot" > /data/data.txt && sync /data/data.txt && i=0; '
  + 'while :; do i=$((i+1)); echo $i >> /data/log; sync /data/log; df -k /data | tail -n1; sleep 1; done';

function parseQuantity(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(q);
  assert.ok(m, `quantity ${q}`);
  return Number(m[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi', 'Ti'].indexOf(m[2] ?? '');
}

async function crs(plural: string): Promise<any[]> { return (await c.api.get(`${CR}/${plural}`)).items; }

/** Lines the writer pod has appended so far, read through the node's mount of its volume. */
async function written(): Promise<number> {
  return readFileSync(join(await u.targetPath('writer', 'data'), 'log'), 'utf8').split('\n').filter(Boolean).length;
}

async function writesGoOn(from: number, what: string): Promise<number> {
  return await until(`the writer's I/O going on ${what}`, async () => { const n = await written(); return n > from + 3 ? n : undefined; }, 180_000);
}

async function nodePlugin(): Promise<any> {
  const [pod] = await rolledOut(c.api, 'daemonsets', `${RELEASE}-node`);
  return pod;
}

/** What `kubectl get pods,ds,deploy -A` and the warning events would show: printed when a step fails. */
async function clusterState(): Promise<string> {
  const pods = (await c.api.get('/api/v1/pods')).items.map((p: any) => `  pod ${p.metadata.namespace}/${p.metadata.name} ${p.status.phase} node=${p.spec.nodeName ?? '-'} `
    + (p.status.containerStatuses ?? []).map((s: any) => `${s.name}:${s.ready ? 'ready' : JSON.stringify(s.state)}`).join(' ')
    + (p.status.conditions ?? []).filter((x: any) => x.status !== 'True').map((x: any) => ` ${x.type}=${x.reason ?? ''}:${x.message ?? ''}`).join(''));
  const sets = [...(await c.api.get('/apis/apps/v1/daemonsets')).items, ...(await c.api.get('/apis/apps/v1/deployments')).items]
    .map((w: any) => `  ${w.kind ?? 'workload'} ${w.metadata.namespace}/${w.metadata.name} ${JSON.stringify(w.status)}`);
  const events = (await c.api.get('/api/v1/events')).items.filter((e: any) => e.type !== 'Normal')
    .map((e: any) => `  event ${e.involvedObject.kind}/${e.involvedObject.name}: ${e.reason}: ${e.message}`);
  const nodes = (await c.api.get('/api/v1/nodes')).items.map((n: any) => `  node ${n.metadata.name} taints=${JSON.stringify(n.spec.taints ?? [])} labels=${JSON.stringify(n.metadata.labels)}`);
  return ['realcluster: cluster state', ...nodes, ...pods, ...sets, ...events.slice(-40)].join('\n');
}

/** The node's CSIStorageCapacity for the chart's class, as external-provisioner publishes it. */
async function nodeCapacity(): Promise<any> {
  return (await c.api.get(`/apis/storage.k8s.io/v1/namespaces/${NS}/csistoragecapacities`)).items
    .find((x: any) => x.storageClassName === 'dmthin' && x.nodeTopology?.matchLabels?.[TOPOLOGY_KEY] === NODE && x.capacity);
}
let capacityBefore = 0;

/** From `helm uninstall` to the reinstall's node plugin Ready: the release's RBAC is gone while its pods still run. */
const uninstalled = { from: Infinity, to: -Infinity };

const step = gatedSteps(async (name, err) => {
  console.log(`realcluster: "${name}" failed at ${((Date.now() - t0) / 1000).toFixed(1)} s: ${String((err as Error).stack ?? err)}`);
  console.log(await clusterState().catch((e) => `realcluster: no cluster state: ${String(e)}`));
});

describe('a real cluster: helm install onto a kubelet, pods using the volumes', { timeout: 3_000_000 }, () => {
  before(async () => {
    removeLeftPool(POOL, STATE_DIR); // an earlier suite of this boot (realkube) used the chart's default pool too
    await c.start(join(ROOT, '.cache', 'realcluster', 'images'));
    mark(`node ${NODE} Ready`);
  });
  after(async () => {
    await c.stop();
    mark('stopped');
  });

  step('installs with helm; controller and node plugin Ready, CSINode and CSIStorageCapacity published', async () => {
    await installSnapshotSupport(c.api, realkubeCache(ROOT, 'crds'), suiteFile(ROOT, 'snapshot-controller.yaml'));
    const out = await helmInstall(c, ROOT);
    assert.match(out, /STATUS: deployed/);
    mark('helm install done');
    await rolledOut(c.api, 'daemonsets', `${RELEASE}-node`);
    await rolledOut(c.api, 'deployments', `${RELEASE}-controller`);
    await rolledOut(c.api, 'deployments', 'snapshot-controller');
    mark('controller, node plugin and snapshot-controller Ready');
    const csiNode = await until('CSINode lists the driver', async () => (await c.api.get(`/apis/storage.k8s.io/v1/csinodes/${NODE}`)).spec.drivers?.find((d: any) => d.name === DRIVER));
    assert.equal(csiNode.nodeID, NODE);
    assert.deepEqual(csiNode.topologyKeys, [TOPOLOGY_KEY]);
    assert.equal((await c.api.get(`/api/v1/nodes/${NODE}`)).metadata.labels[TOPOLOGY_KEY], NODE);
    const cap = await until('CSIStorageCapacity for the node', nodeCapacity);
    assert.ok(cap.metadata.ownerReferences?.length, 'owned by the controller\'s Deployment (--capacity-ownerref-level=2)');
    // A file pool's capacity is what the filesystem under its data file can still give (the guest's
    // tmpfs, well under the 256Gi file): the sidecar publishes what the node's ThinPool reports.
    const published = capacityBefore = parseQuantity(cap.capacity);
    const reported = Number((await c.api.get(`${CR}/thinpools/${NODE}`)).status?.capacityBytes);
    assert.ok(published > 4 * GiB && published <= 256 * GiB, `capacity ${cap.capacity} published for the node's 256Gi pool`);
    // Within what etcd, logs and images may write to the same tmpfs between the two reads.
    assert.ok(Math.abs(published - reported) <= GiB, `published ${published}, the ThinPool reports ${reported}`);
    mark(`CSIStorageCapacity ${cap.capacity}`);
  });

  step('a pod with a WaitForFirstConsumer claim: scheduled, staged and published by the kubelet, writes and fsyncs', async () => {
    await u.createPvc('data', '1Gi');
    await u.createPod('writer', WRITER, ['data'], [], 'Always');
    const pod = await u.phase('writer', ['Running']);
    assert.equal(pod.status.phase, 'Running');
    assert.equal(pod.spec.nodeName, NODE);
    const pvc = await u.pvc('data');
    assert.equal(pvc.metadata.annotations['volume.kubernetes.io/selected-node'], NODE, 'the scheduler chose the node');
    const pv = await c.api.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    assert.deepEqual(pv.spec.nodeAffinity.required.nodeSelectorTerms, [{ matchExpressions: [{ key: TOPOLOGY_KEY, operator: 'In', values: [NODE] }] }]);
    assert.equal(readFileSync(join(await u.targetPath('writer', 'data'), 'data.txt'), 'utf8'), 'written before the snapshot\n');
    assert.equal(stagingDirs().length, 1, 'staged once, in the kubelet\'s own staging directory');
    await writesGoOn(0, 'after the start');
    mark('writer running');
  });

  step('snapshots through a VolumeSnapshot; a restored claim and a clone read back by another pod', async () => {
    const st = await u.snapshot('snap-1', 'data');
    assert.equal(st.restoreSize, '1Gi');
    await u.createPvc('restored', '2Gi', { dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'snap-1' } });
    await u.createPvc('clone', '1Gi', { dataSource: { kind: 'PersistentVolumeClaim', name: 'data' } });
    await u.createPod('reader', 'cat /restored/data.txt /clone/data.txt && df -k /restored | tail -n1', ['restored', 'clone']);
    const pod = await u.phase('reader', ['Succeeded']);
    const out = await u.logs('reader');
    assert.equal(pod.status.phase, 'Succeeded', out);
    assert.match(out, /^written before the snapshot\nwritten before the snapshot\n/);
    // busybox df puts a long device name on a line of its own: the numbers are the last line's.
    const kib = /(\d+)\s+\d+\s+\d+\s+\d+%\s+\/restored\n$/.exec(out);
    assert.ok(kib && Number(kib[1]) * 1024 > 1.8 * GiB, `the restored claim has its 2Gi: ${out}`);
    mark('snapshot, restore, clone read back');
  });

  step('expands the claim while its pod runs; the pod sees the new size', async () => {
    const before = await u.logMatch('writer', /(\d+)\s+\d+\s+\d+\s+\d+%\s+\/data\n$/);
    await c.api.mergePatch('/api/v1/namespaces/default/persistentvolumeclaims/data', { spec: { resources: { requests: { storage: '2Gi' } } } });
    await until('PVC capacity 2Gi', async () => (await u.pvc('data')).status.capacity?.storage === '2Gi');
    const grown = await until('df in the pod shows the larger filesystem', async () => {
      const m = (await u.logs('writer')).match(/(\d+)\s+\d+\s+\d+\s+\d+%\s+\/data\n$/);
      return m && Number(m[1]) > 1.8 * Number(before[1]) ? Number(m[1]) : undefined;
    });
    const pv = await c.api.get(`/api/v1/persistentvolumes/${(await u.pvc('data')).spec.volumeName}`);
    assert.equal((await c.api.get(`${CR}/thinvolumes/${pv.spec.csi.volumeHandle}`)).spec.sizeBytes, 2 * GiB);
    mark(`expanded: ${before[1]} -> ${grown} KiB`);
  });

  step('a raw block claim in a pod (volumeDevices)', async () => {
    await u.createPvc('blk', '64Mi', { block: true });
    await u.createPod('blockuser', 'blockdev --getsize64 /dev/blk && echo raw-block-ok | dd of=/dev/blk conv=fsync 2>/dev/null && dd if=/dev/blk bs=12 count=1 2>/dev/null', [], ['blk']);
    const pod = await u.phase('blockuser', ['Succeeded']);
    const out = await u.logs('blockuser');
    assert.equal(pod.status.phase, 'Succeeded', out);
    assert.match(out, /^67108864\nraw-block-ok/);
    mark('raw block');
  });

  step('the node plugin\'s pod deleted while the pod writes: the DaemonSet replaces it, the I/O goes on', async () => {
    const old = await nodePlugin();
    const n = await written();
    const registered = c.kubeletSaid(REGISTERED);
    await c.api.delete(`/api/v1/namespaces/${NS}/pods/${old.metadata.name}`);
    const fresh = await until('a new node plugin pod Ready', async () => {
      const p = await nodePlugin();
      return p.metadata.uid !== old.metadata.uid ? p : undefined;
    });
    assert.notEqual(fresh.metadata.name, old.metadata.name);
    await c.driverRegistered(DRIVER, registered);
    await writesGoOn(n, 'across the node plugin\'s replacement');
    mark('node plugin replaced');
  });

  step('the kubelet restarted while volumes are in use: it comes back, the pod keeps writing', async () => {
    await c.stopKubelet();
    const n = await written();
    const restarted = Date.now();
    c.startKubelet();
    await c.nodeReady(300_000, restarted); // as of a status the new kubelet posted
    // It rebuilt its record of the mounted volume from the node and staged it again through the
    // driver (NodeStageVolume on a staged volume): what its unpublish and unstage, later, rely on.
    // Measured: when that stage failed (no driver registered yet), the kubelet later unpublished
    // but never unstaged, and left the staging mount behind.
    await c.driverRegistered(DRIVER, 0);
    const pv = (await u.pvc('data')).spec.volumeName;
    await until('the new kubelet staging the volume again', async () => c.kubeletSaid(`MountVolume.MountDevice succeeded for volume \\"${pv}\\"`) > 0, 300_000);
    await writesGoOn(n, 'across the kubelet\'s restart');
    mark('kubelet restarted');
  });

  step('helm upgrade rolls the DaemonSet with volumes in use', async () => {
    const old = await nodePlugin();
    const n = await written();
    const registered = c.kubeletSaid(REGISTERED);
    assert.match(await helmInstall(c, ROOT, 'upgrade', ['logLevel=debug']), /STATUS: deployed/);
    const fresh = await until('the upgraded node plugin Ready', async () => {
      const p = await nodePlugin();
      return p.metadata.uid !== old.metadata.uid ? p : undefined;
    });
    assert.match(fresh.spec.containers[0].command.join(' '), /--log-level=debug/);
    await c.driverRegistered(DRIVER, registered);
    await rolledOut(c.api, 'deployments', `${RELEASE}-controller`);
    await writesGoOn(n, 'across the upgrade');
    mark('helm upgrade rolled out');
  });

  step('pods and claims deleted: no PV, ThinVolume, device, mount or staging directory left', async () => {
    // Minutes after the volumes were made and written: the sidecar's poll (1 min) has seen the pool's room shrink.
    const lowered = await until('CSIStorageCapacity lowered', async () => { const q = parseQuantity((await nodeCapacity())?.capacity ?? '0'); return q > 0 && q < capacityBefore ? q : undefined; }, 120_000);
    mark(`CSIStorageCapacity lowered by ${((capacityBefore - lowered) / 1024 ** 2).toFixed(0)} MiB`);
    for (const p of ['writer', 'reader', 'blockuser']) await u.deletePod(p);
    await u.deleteSnapshot('snap-1');
    for (const p of ['data', 'restored', 'clone', 'blk']) await u.deletePvc(p);
    await until('ThinVolumes and ThinSnapshots gone', async () => (await crs('thinvolumes')).length + (await crs('thinsnapshots')).length === 0);
    assert.deepEqual((await c.api.get('/api/v1/persistentvolumes')).items.map((p: any) => p.metadata.name), []);
    assert.deepEqual(kubeletMounts(), []);
    assert.deepEqual(stagingDirs(), []);
    assert.deepEqual(poolThinIds(POOL, STATE_DIR), []);
    mark('all deleted');
  });

  step('helm uninstall with a volume in use: the release goes, the CRDs, the volume and its data stay; a reinstall cleans up', async () => {
    await u.createPvc('kept', '256Mi');
    await u.createPod('keeper', 'echo kept > /kept/data.txt && sync /kept/data.txt && while :; do date >> /kept/log; sleep 1; done', ['kept'], [], 'Always');
    await u.phase('keeper', ['Running']);
    const pv = (await u.pvc('kept')).spec.volumeName;
    uninstalled.from = Date.now();
    await c.helm(['uninstall', RELEASE, '--namespace', NS]);
    await until('the release\'s pods gone', async () => (await c.api.get(`/api/v1/namespaces/${NS}/pods?labelSelector=app.kubernetes.io%2Finstance%3D${RELEASE}`)).items.length === 0);
    assert.equal((await c.api.request('GET', `/apis/storage.k8s.io/v1/csidrivers/${DRIVER}`)).status, 404);
    assert.equal((await c.api.request('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/thinvolumes.dmthin.csi.io')).status, 200, 'helm keeps crds/');
    assert.equal((await crs('thinvolumes')).length, 1);
    assert.equal((await c.api.get(`/api/v1/persistentvolumes/${pv}`)).status.phase, 'Bound');
    const path = await u.targetPath('keeper', 'kept');
    const lines = readFileSync(join(path, 'log'), 'utf8').split('\n').length;
    await until('the pod writing on without the driver', async () => readFileSync(join(path, 'log'), 'utf8').split('\n').length > lines + 2, 60_000);
    writeFileSync(join(logs, 'uninstall.txt'), `after helm uninstall with ${pv} in use: release objects gone, CRDs and ${(await crs('thinvolumes')).length} ThinVolume kept, PV Bound, the pod's I/O going on\n`);
    mark('uninstalled with a volume in use');
    assert.match(await helmInstall(c, ROOT), /STATUS: deployed/);
    await nodePlugin();
    uninstalled.to = Date.now();
    await u.deletePod('keeper');
    await u.deletePvc('kept');
    await until('its ThinVolume gone', async () => (await crs('thinvolumes')).length === 0);
    assert.deepEqual(kubeletMounts(), []);
    assert.deepEqual(poolThinIds(POOL, STATE_DIR), []);
    mark('reinstalled, cleaned up');
  });

  // Not gated on the steps before: whatever ran, the server's record of it must show no denial.
  it('every request of the chart\'s ServiceAccounts, from the pods, was allowed by the real RBAC', async () => {
    const objs = await releaseObjects(c).catch(() => []);
    // Not while the release was uninstalled: its pods' requests are refused then, as they must be.
    const during = (e: AuditEvent) => { const t = Date.parse(e.requestReceivedTimestamp ?? ''); return t >= uninstalled.from && t <= uninstalled.to; };
    const s = summarize(c.plane.auditEvents().filter((e) => !during(e)), objs, [`${RELEASE}-controller`, `${RELEASE}-node`]);
    assert.ok(s.requests > 100, `audit log holds the pods' requests (${s.requests})`);
    assert.deepEqual(s.denied, []);
    const lines = [...s.unused].map(([sa, verbs]) => `${sa}: ${verbs.join(', ') || '(none)'}`);
    writeFileSync(join(logs, 'rbac-usage.txt'), `granted but never used:\n${lines.join('\n')}\n`);
    console.log(`realcluster: ${s.requests} requests audited; RBAC granted but never used:\n  ${lines.join('\n  ')}`);
  });
});
