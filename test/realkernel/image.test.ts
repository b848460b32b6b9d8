/**
 * The container image on the real kernel: the image's own root filesystem (exported by
 * scripts/build-image.sh --export .cache/image/rootfs) runs the chart's node DaemonSet container
 * (privileged, host /dev and /sys, its command and the pools ConfigMap's flags, all read from the
 * rendered chart) and its controller Deployment container (entrypoint + args), against the API
 * server test double. A short lifecycle over their sockets proves the image carries every tool and
 * library the driver calls on a real dm-thin pool.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { after, before, describe, it } from 'node:test';
import { startApiDouble, type ApiDouble } from '../doubles/kube-api/index.ts';
import { connectCsi, GiB, mountCap, type CsiClients } from '../support/csi-client.ts';
import { ROOT, tail } from './harness.ts';
import {
  containerProcess, containerRoot, imageConfig, manifest, minimalDev, mountVolumes, removeContainer, startContainer,
  stopContainer, type Container,
} from './image-containers.ts';
import { sleep } from '../../src/system/delay.ts';

const NODE = 'rk-image-node';
const KUBE_DIR = '/run/dmthin-rk-image-kube';
const POOLS_DIR = '/run/dmthin-rk-image-pools';
const docs = manifest();
const podOf = (kind: string) => docs.find((d) => d.kind === kind)!.spec.template.spec;
const nodePod = podOf('DaemonSet');
const ctrlPod = podOf('Deployment');
const pools = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-pools'))!;
const poolName = /--pool-name=(\S+)/.exec(pools.data.default)![1]!;
// The kubelet's paths for a CSI volume (kubernetes.io/csi), under the chart's kubeletDir.
const kubelet = nodePod.volumes.find((v: any) => v.name === 'kubelet-dir').hostPath.path as string;
const staging = (v: string) => `${kubelet}/plugins/kubernetes.io/csi/dmthin.csi.io/${v}/globalmount`;
const target = (v: string) => `${kubelet}/pods/pod-${v}/volumes/kubernetes.io~csi/${v}/mount`;
const topology = { requisite: [{ segments: { 'dmthin.csi.io/node': NODE } }], preferred: [{ segments: { 'dmthin.csi.io/node': NODE } }] };

let api: ApiDouble;
let node: Container | undefined;
let ctrl: Container | undefined;
let nodeCsi: CsiClients;
let ctrlCsi: CsiClients;

async function ready(endpoint: string): Promise<true | undefined> {
  const c = connectCsi(endpoint);
  try {
    return (await c.identity.call('Probe', {}, 5000)).ready?.value ? true : undefined;
  } finally {
    c.close();
  }
}

function nodeSocket(): string {
  const plugin = nodePod.volumes.find((v: any) => v.name === 'plugin-dir').hostPath.path as string;
  return `unix://${plugin}/csi.sock`;
}

/** The thin devices on the chart's pool, from the kernel's tables. */
function thinsOnPool(): string[] {
  const pool = execFileSync('dmsetup', ['info', '-c', '--noheadings', '-o', 'major,minor', poolName], { encoding: 'utf8' }).trim();
  const tables = execFileSync('dmsetup', ['table', '--target', 'thin'], { encoding: 'utf8' }).trim();
  return tables.split('\n').map((l) => /^(\S+): \d+ \d+ thin (\S+) /.exec(l)).filter((m) => m?.[2] === pool).map((m) => m![1]!);
}

async function startPods(): Promise<void> {
  const crds = ['thinpools', 'thinvolumes', 'thinsnapshots', 'thingroupsnapshots'].map((p) => loadCrd(p));
  api = await startApiDouble({ crds });
  await api.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  mkdirSync(KUBE_DIR, { recursive: true });
  writeFileSync(join(KUBE_DIR, 'kubeconfig'), api.kubeConfig().exportConfig());
  mkdirSync(POOLS_DIR, { recursive: true });
  writeFileSync(join(POOLS_DIR, 'default'), pools.data.default);
  const image = imageConfig();
  const kube = { KUBECONFIG: '/run/kube/kubeconfig' };

  const nroot = containerRoot('node');
  mountVolumes(nroot, nodePod, nodePod.containers[0], { [pools.metadata.name]: POOLS_DIR });
  mountVolumes(nroot, { volumes: [{ name: 'kube', hostPath: { path: KUBE_DIR } }] }, { volumeMounts: [{ name: 'kube', mountPath: '/run/kube', readOnly: true }] });
  node = startContainer(nroot, 'node', containerProcess(image, nodePod.containers[0], { ...kube, NODE_NAME: NODE }));

  const croot = containerRoot('controller');
  minimalDev(croot);
  mountVolumes(croot, ctrlPod, ctrlPod.containers[0]);
  mountVolumes(croot, { volumes: [{ name: 'kube', hostPath: { path: KUBE_DIR } }] }, { volumeMounts: [{ name: 'kube', mountPath: '/run/kube', readOnly: true }] });
  ctrl = startContainer(croot, 'controller', containerProcess(image, ctrlPod.containers[0], { ...kube, POD_NAMESPACE: 'default', POD_NAME: 'rk-image-controller' }));

  const ctrlEp = `unix://${join(croot, '..', 'emptydir-socket-dir')}/csi.sock`;
  for (const [c, ep] of [[node, nodeSocket()], [ctrl, ctrlEp]] as const) {
    const r = await until(`${c.log} ready`, async () => (c.child.exitCode !== null ? 'exited' : ready(ep)), 240_000).catch((err) => String(err));
    assert.equal(r, true, `${r}\n${tail(c.log)}`);
  }
  await until('node pool published', async () => ((api.objects('thinpools.dmthin.csi.io')[0] as { status?: object } | undefined)?.status ? true : undefined));
  nodeCsi = connectCsi(nodeSocket());
  ctrlCsi = connectCsi(ctrlEp);
}

function loadCrd(plural: string): object {
  return load(readFileSync(join(ROOT, `deploy/crds/dmthin.csi.io_${plural}.yaml`), 'utf8')) as object;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 180_000): Promise<T> {
  for (const end = Date.now() + ms; ;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await sleep(250);
  }
}

async function createVolume(name: string, size: number, source?: object, cap = mountCap()): Promise<string> {
  const r = await ctrlCsi.controller.call('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [cap], accessibility_requirements: topology, volume_content_source: source ?? null }, 180_000);
  return r.volume.volume_id as string;
}

async function stagePublish(id: string, cap = mountCap()): Promise<void> {
  for (const dir of [staging(id), join(target(id), '..')]) mkdirSync(dir, { recursive: true }); // as the kubelet does
  await nodeCsi.node.call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: cap }, 180_000);
  await nodeCsi.node.call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: cap, readonly: false }, 180_000);
}

async function unpublishUnstage(id: string): Promise<void> {
  await nodeCsi.node.call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) }, 180_000);
  await nodeCsi.node.call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) }, 180_000);
}

describe('the image on the real kernel: the chart\'s node and controller containers', { timeout: 1_200_000 }, () => {
  before(async () => {
    rmSync(nodePod.volumes.find((v: any) => v.name === 'state-dir').hostPath.path, { recursive: true, force: true });
    await startPods();
  });

  after(async () => {
    nodeCsi?.close();
    ctrlCsi?.close();
    const codes = [await stopContainer(ctrl), await stopContainer(node)];
    for (const c of [ctrl, node]) if (c) removeContainer(c.root);
    await api?.close();
    assert.deepEqual(codes, [0, 0], `containers stop cleanly on SIGTERM\n${node ? tail(node.log) : ''}`);
  });

  it('runs doctor in the node container: every check passes on this kernel', () => {
    const out = execFileSync('chroot', [node!.root, '/usr/local/bin/dmthin-csi', 'doctor'], { encoding: 'utf8', env: containerProcess(imageConfig(), nodePod.containers[0], {}).env });
    for (const tool of ['dm-thin targets', 'dmsetup', 'mkfs.ext4', 'resize2fs', 'mkfs.xfs', 'xfs_growfs', 'thin_check', 'thin_ls']) {
      assert.match(out, new RegExp(`\\[ OK \\] ${tool.replace('.', '\\.')}\\s`), out);
    }
    assert.doesNotMatch(out, /FAIL/, out);
  });

  it('creates, stages, publishes, writes, snapshots, restores and deletes', async () => {
    // The controller serves once it holds the leader Lease; until then it answers UNAVAILABLE, which the CO retries.
    const v1 = await until('the leader creates a volume', () => createVolume('pvc-image-1', GiB));
    await stagePublish(v1);
    // The driver mounted inside its container; the host (the kubelet's view) sees it through the Bidirectional mount.
    assert.match(readFileSync('/proc/self/mounts', 'utf8'), new RegExp(`${target(v1).replaceAll('~', '\\~')} ext4 `));
    writeFileSync(`${target(v1)}/data.txt`, 'written through the image\n');
    execFileSync('sync');
    const snap = await ctrlCsi.controller.call('CreateSnapshot', { name: 'snap-image-1', source_volume_id: v1 }, 180_000);
    assert.equal(snap.snapshot.ready_to_use, true);
    const v2 = await createVolume('pvc-image-restored', 2 * GiB, { snapshot: { snapshot_id: snap.snapshot.snapshot_id } });
    await stagePublish(v2);
    assert.equal(readFileSync(`${target(v2)}/data.txt`, 'utf8'), 'written through the image\n');
    assert.equal(thinsOnPool().length, 2, 'two live thin devices on the chart\'s pool');

    for (const id of [v1, v2]) await unpublishUnstage(id);
    assert.doesNotMatch(readFileSync('/proc/self/mounts', 'utf8'), /kubernetes\.io~csi/);
    await ctrlCsi.controller.call('DeleteSnapshot', { snapshot_id: snap.snapshot.snapshot_id }, 180_000);
    for (const id of [v1, v2]) await ctrlCsi.controller.call('DeleteVolume', { volume_id: id }, 180_000);
    assert.deepEqual((await ctrlCsi.controller.call('ListVolumes', {})).entries, []);
    await until('resources and their finalizers gone', async () =>
      (api.objects('thinvolumes.dmthin.csi.io').length + api.objects('thinsnapshots.dmthin.csi.io').length === 0 ? true : undefined));
    assert.deepEqual(thinsOnPool(), []);
  });

  it('formats an xfs volume and grows it online (the image\'s mkfs.xfs and xfs_growfs)', async () => {
    const xfs = mountCap('xfs');
    const v = await until('the leader creates a volume', () => createVolume('pvc-image-xfs', GiB, undefined, xfs));
    await stagePublish(v, xfs);
    assert.match(readFileSync('/proc/self/mounts', 'utf8'), new RegExp(`${target(v).replaceAll('~', '\\~')} xfs `));
    await ctrlCsi.controller.call('ControllerExpandVolume', { volume_id: v, capacity_range: { required_bytes: 2 * GiB }, volume_capability: xfs }, 180_000);
    await nodeCsi.node.call('NodeExpandVolume', { volume_id: v, volume_path: target(v), staging_target_path: staging(v), capacity_range: { required_bytes: 2 * GiB } }, 180_000);
    const fs = statfsSync(target(v));
    assert.ok(fs.blocks * fs.bsize > 1.5 * GiB, `xfs grown online (${fs.blocks * fs.bsize})`);
    await unpublishUnstage(v);
    await ctrlCsi.controller.call('DeleteVolume', { volume_id: v }, 180_000);
    assert.deepEqual(thinsOnPool(), []);
  });
});
