/**
 * RBAC against the contract of the Kubernetes-mode code: each service account gets every
 * verb on every resource the contract lists, and nothing else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type RenderedDoc, renderChart } from './render.ts';

type Grants = Map<string, Set<string>>; // "group/resource" → verbs
type Contract = Array<[group: string, resources: string[], verbs: string[]]>;

const DRIVER_CONTROLLER: Contract = [
  ['dmthin.csi.io', ['thinvolumes'], ['get', 'list', 'watch', 'create', 'delete', 'patch']],
  ['dmthin.csi.io', ['thinsnapshots'], ['get', 'list', 'watch', 'create', 'delete', 'patch']],
  ['dmthin.csi.io', ['thingroupsnapshots'], ['get', 'list', 'watch', 'create', 'delete', 'patch']],
  ['dmthin.csi.io', ['thinpools'], ['get', 'list', 'watch']],
  ['coordination.k8s.io', ['leases'], ['get', 'create', 'update']],
  ['', ['events'], ['create', 'patch']],
];
const PROVISIONER: Contract = [
  ['', ['persistentvolumes'], ['get', 'list', 'watch', 'create', 'delete']],
  ['', ['persistentvolumeclaims'], ['get', 'list', 'watch', 'update']],
  ['storage.k8s.io', ['storageclasses'], ['get', 'list', 'watch']],
  ['', ['events'], ['list', 'watch', 'create', 'update', 'patch']],
  ['storage.k8s.io', ['csinodes'], ['get', 'list', 'watch']],
  ['', ['nodes'], ['get', 'list', 'watch']],
  ['storage.k8s.io', ['volumeattachments'], ['get', 'list', 'watch']],
  ['storage.k8s.io', ['csistoragecapacities'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']],
  ['', ['pods'], ['get']],
  ['apps', ['replicasets'], ['get']],
  // Leader election (client-go, as in the sidecars' upstream RBAC); the same for the other two.
  ['coordination.k8s.io', ['leases'], ['get', 'list', 'watch', 'create', 'update', 'delete']],
];
const SNAPSHOTTER: Contract = [
  ['snapshot.storage.k8s.io', ['volumesnapshotclasses'], ['get', 'list', 'watch']],
  ['snapshot.storage.k8s.io', ['volumesnapshotcontents'], ['get', 'list', 'watch', 'update', 'patch']],
  ['snapshot.storage.k8s.io', ['volumesnapshotcontents/status'], ['update', 'patch']],
  ['snapshot.storage.k8s.io', ['volumesnapshots'], ['get', 'list', 'watch', 'update', 'patch']],
  ['', ['events'], ['list', 'watch', 'create', 'update', 'patch']],
  ['coordination.k8s.io', ['leases'], ['get', 'list', 'watch', 'create', 'update', 'delete']],
];
/** The snapshotter's group snapshot part, granted only with volumeGroupSnapshots.enabled (upstream's RBAC for it). */
const GROUP_SNAPSHOTTER: Contract = [
  ['groupsnapshot.storage.k8s.io', ['volumegroupsnapshotclasses'], ['get', 'list', 'watch']],
  ['groupsnapshot.storage.k8s.io', ['volumegroupsnapshotcontents'], ['get', 'list', 'watch', 'update', 'patch']],
  ['groupsnapshot.storage.k8s.io', ['volumegroupsnapshotcontents/status'], ['update', 'patch']],
];
/** snapshotMetadata.enabled: upstream's external-snapshot-metadata-runner, for the sidecar in the controller pod. */
const SNAPSHOT_METADATA_SIDECAR: Contract = [
  ['cbt.storage.k8s.io', ['snapshotmetadataservices'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']],
  ['authentication.k8s.io', ['tokenreviews'], ['create', 'get']],
  ['authorization.k8s.io', ['subjectaccessreviews'], ['create', 'get']],
  ['snapshot.storage.k8s.io', ['volumesnapshots', 'volumesnapshotcontents'], ['get', 'list']],
];
/** snapshotMetadata.enabled: the node agent reviews the tokens of its channel's callers (src/kube/channel/auth.ts). */
const NODE_CHANNEL: Contract = [['authentication.k8s.io', ['tokenreviews'], ['create']]];
const RESIZER: Contract = [
  ['', ['persistentvolumes'], ['get', 'list', 'watch', 'update', 'patch']],
  ['', ['persistentvolumeclaims'], ['get', 'list', 'watch']],
  ['', ['persistentvolumeclaims/status'], ['update', 'patch']],
  ['', ['pods'], ['list', 'watch']],
  ['', ['events'], ['list', 'watch', 'create', 'update', 'patch']],
  ['coordination.k8s.io', ['leases'], ['get', 'list', 'watch', 'create', 'update', 'delete']],
];
const NODE: Contract = [
  ['dmthin.csi.io', ['thinvolumes', 'thinsnapshots', 'thingroupsnapshots'], ['get', 'list', 'watch', 'update', 'patch']],
  ['dmthin.csi.io', ['thinvolumes/status', 'thinsnapshots/status', 'thingroupsnapshots/status'], ['get', 'update', 'patch']],
  ['dmthin.csi.io', ['thinpools'], ['get', 'create', 'update', 'patch']],
  ['dmthin.csi.io', ['thinpools/status'], ['get', 'update', 'patch']],
  ['', ['events'], ['create', 'patch']],
  ['', ['nodes'], ['get']],
];

function add(g: Grants, group: string, resources: string[], verbs: string[]): void {
  for (const r of resources) {
    const key = `${group}/${r}`;
    const set = g.get(key) ?? new Set<string>();
    for (const v of verbs) set.add(v);
    g.set(key, set);
  }
}

function fromContract(...parts: Contract[]): Grants {
  const g: Grants = new Map();
  for (const part of parts) for (const [group, resources, verbs] of part) add(g, group, resources, verbs);
  return g;
}

/** Everything bound to a service account, by ClusterRoleBindings and RoleBindings alike. */
function grantsOf(docs: RenderedDoc[], sa: string): Grants {
  const g: Grants = new Map();
  const roles = new Map(docs.filter((d) => d.object.kind === 'ClusterRole' || d.object.kind === 'Role')
    .map((d) => [`${String(d.object.kind)}/${(d.object.metadata as { name: string }).name}`, d.object as any]));
  for (const b of docs.filter((d) => d.object.kind === 'ClusterRoleBinding' || d.object.kind === 'RoleBinding').map((d) => d.object as any)) {
    if (!b.subjects.some((s: any) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === 'kube-system')) continue;
    const role = roles.get(`${b.roleRef.kind}/${b.roleRef.name}`);
    assert.ok(role, `binding ${b.metadata.name} refers to a missing ${b.roleRef.kind} ${b.roleRef.name}`);
    for (const rule of role.rules) {
      assert.ok(!rule.resourceNames && !rule.nonResourceURLs, 'no resourceNames or nonResourceURLs expected');
      for (const group of rule.apiGroups) add(g, group, rule.resources, rule.verbs);
    }
  }
  return g;
}

function asSorted(g: Grants): Record<string, string[]> {
  return Object.fromEntries([...g.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, [...v].sort()]));
}

test('controller service account: exactly the driver contract plus the three sidecars', async () => {
  const docs = await renderChart();
  assert.deepEqual(asSorted(grantsOf(docs, 'dmthin-csi-controller')), asSorted(fromContract(DRIVER_CONTROLLER, PROVISIONER, SNAPSHOTTER, RESIZER)));
});

test('with group snapshots enabled: the snapshotter\'s group RBAC besides, and its feature gate', async () => {
  const docs = await renderChart({ values: { volumeGroupSnapshots: { enabled: true } } });
  assert.deepEqual(asSorted(grantsOf(docs, 'dmthin-csi-controller')), asSorted(fromContract(DRIVER_CONTROLLER, PROVISIONER, SNAPSHOTTER, GROUP_SNAPSHOTTER, RESIZER)));
  const containers = (docs.find((d) => d.object.kind === 'Deployment')!.object as any).spec.template.spec.containers;
  assert.ok(containers.find((c: any) => c.name === 'csi-snapshotter').args.includes('--feature-gates=CSIVolumeGroupSnapshot=true'));
  const off = (await renderChart()).find((d) => d.object.kind === 'Deployment')!.object as any;
  assert.ok(!off.spec.template.spec.containers.find((c: any) => c.name === 'csi-snapshotter').args.some((a: string) => a.startsWith('--feature-gates')), 'off by default');
});

test('with snapshot metadata enabled: the sidecar\'s RBAC for the controller, TokenReview for the node', async () => {
  const docs = await renderChart({ values: { snapshotMetadata: { enabled: true } } });
  assert.deepEqual(asSorted(grantsOf(docs, 'dmthin-csi-controller')), asSorted(fromContract(DRIVER_CONTROLLER, PROVISIONER, SNAPSHOTTER, RESIZER, SNAPSHOT_METADATA_SIDECAR)));
  assert.deepEqual(asSorted(grantsOf(docs, 'dmthin-csi-node')), asSorted(fromContract(NODE, NODE_CHANNEL)));
});

test('node service account: exactly the node contract', async () => {
  const docs = await renderChart();
  assert.deepEqual(asSorted(grantsOf(docs, 'dmthin-csi-node')), asSorted(fromContract(NODE)));
});

test('no wildcard anywhere, leases only namespaced, our own group only as the contract says', async () => {
  const docs = await renderChart();
  for (const d of docs.filter((x) => x.object.kind === 'ClusterRole' || x.object.kind === 'Role')) {
    for (const rule of (d.object as any).rules) {
      for (const field of ['apiGroups', 'resources', 'verbs']) assert.ok(!rule[field].includes('*'), `${d.source}: wildcard in ${field}`);
      if (rule.resources.includes('leases')) assert.equal(d.object.kind, 'Role', 'leases granted cluster-wide');
    }
  }
  const own = (g: Grants) => asSorted(new Map([...g].filter(([k]) => k.startsWith('dmthin.csi.io/'))));
  assert.deepEqual(own(grantsOf(docs, 'dmthin-csi-controller')), own(fromContract(DRIVER_CONTROLLER)));
  assert.deepEqual(own(grantsOf(docs, 'dmthin-csi-node')), own(fromContract(NODE)));
});

test('the workloads run as the service accounts checked above', async () => {
  const docs = await renderChart();
  const sa = (kind: string) => (docs.find((d) => d.object.kind === kind)!.object as any).spec.template.spec.serviceAccountName;
  assert.equal(sa('Deployment'), 'dmthin-csi-controller');
  assert.equal(sa('DaemonSet'), 'dmthin-csi-node');
});
