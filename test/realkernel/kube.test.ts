/**
 * Kubernetes mode on a real kernel: the API server test double in this process, the real
 * `dmthin-csi controller` and `dmthin-csi node` processes against it and a real pool. A
 * PVC-like flow goes through ThinVolume/ThinSnapshot resources end to end, then the node
 * agent is SIGKILLed mid-operation and must converge after a restart.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, fsyncSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadYaml } from '@kubernetes/client-node';
import { startApiDouble, type ApiDouble } from '../kube-double/index.ts';
import { connectCsi, GiB, MiB, mountCap, type CsiClients } from '../support/csi-client.ts';
import { KUBELET, liveThins, LOGS, POOL, poolThinIds, ROOT, STATE } from './harness.ts';

const NODE = 'rk-kube-node';
const NODE_EP = 'unix:///run/dmthin-rk-kube/node.sock';
const CTRL_EP = 'unix:///run/dmthin-rk-kube/controller.sock';
const VOLS = 'thinvolumes.dmthin.csi.io';
const SNAPS = 'thinsnapshots.dmthin.csi.io';
const SETTLED = new Set(['Created', 'Activated', 'Deactivated', 'Resumed']);

let api: ApiDouble;
let kubeconfig = '';
let nodeProc: { child: ChildProcess; exited: Promise<unknown> } | undefined;
let ctrlProc: { child: ChildProcess; exited: Promise<unknown> } | undefined;
let csi: { node: CsiClients; ctrl: CsiClients };
let starts = 0;

function launch(args: string[]): { child: ChildProcess; exited: Promise<unknown> } {
  mkdirSync(LOGS, { recursive: true });
  const fd = openSync(join(LOGS, `kube-${args[0]}-${++starts}.log`), 'w');
  const child = spawn(process.execPath, [join(ROOT, 'dist/dmthin-csi.mjs'), ...args], {
    stdio: ['ignore', fd, fd], env: { ...process.env, KUBECONFIG: kubeconfig, POD_NAME: 'rk-controller', POD_NAMESPACE: 'default' },
  });
  closeSync(fd);
  return { child, exited: new Promise((r) => child.once('exit', r)) };
}

const startNode = () => launch(['node', '--node-id', NODE, '--endpoint', NODE_EP, '--state-dir', STATE, '--pool-name', POOL, '--loop-data-size', '32Gi', '--loop-metadata-size', '256Mi']);

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 180_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

const ready = (c: CsiClients) => c.identity.call('Probe', {}, 5000).then((r) => (r.ready?.value ? true : undefined));
const topology = { preferred: [{ segments: { 'dmthin.csi.io/node': NODE } }], requisite: [{ segments: { 'dmthin.csi.io/node': NODE } }] };
const staging = (v: string) => `${KUBELET}/staging/${v}`;
const target = (v: string) => `${KUBELET}/pods/${v}`;
type Cr = { metadata: { name: string; finalizers?: string[] }; status?: { state?: string; deviceId?: number } };
const crs = (plural: string) => api.objects(plural) as unknown as Cr[];

function assertConverged(context: string) {
  const all = [...crs(VOLS), ...crs(SNAPS)];
  assert.deepEqual(all.filter((o) => !SETTLED.has(o.status?.state ?? '')).map((o) => `${o.metadata.name}:${o.status?.state}`), [], `${context}: every resource settled`);
  assert.deepEqual(liveThins().filter((t) => t.suspended), [], `${context}: nothing suspended`);
  const ids = all.map((o) => o.status!.deviceId!).sort((a, b) => a - b);
  assert.deepEqual(poolThinIds().sort((a, b) => a - b), ids, `${context}: pool thin ids == resources' device ids`);
}

async function createVolume(name: string, size: number, source?: object) {
  const r = await csi.ctrl.controller.call('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [mountCap()], accessibility_requirements: topology, volume_content_source: source ?? null }, 180_000);
  return r.volume.volume_id as string;
}

async function stagePublish(id: string) {
  await csi.node.node.call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: mountCap() });
  await csi.node.node.call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: mountCap(), readonly: false });
}

describe('Kubernetes mode: controller + node agent + API double + real pool', { timeout: 1_800_000 }, () => {
  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(STATE, { recursive: true });
    const crds = ['thinpools', 'thinvolumes', 'thinsnapshots'].map((p) => loadYaml(readFileSync(join(ROOT, `deploy/crds/dmthin.csi.io_${p}.yaml`), 'utf8')));
    api = await startApiDouble({ crds });
    await api.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } }); // a live node keeps its finalizers
    kubeconfig = join(STATE, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeConfig().exportConfig());
    nodeProc = startNode();
    ctrlProc = launch(['controller', '--endpoint', CTRL_EP, '--lease-namespace', 'default']);
    csi = { node: connectCsi(NODE_EP), ctrl: connectCsi(CTRL_EP) };
    await until('node ready', () => ready(csi.node));
    await until('controller ready', () => ready(csi.ctrl));
    await until('node pool published', async () => (crs('thinpools.dmthin.csi.io')[0] as { status?: { capacityBytes?: number } } | undefined)?.status ? true : undefined);
  });

  after(async () => {
    csi?.node.close();
    csi?.ctrl.close();
    for (const p of [nodeProc, ctrlProc]) { p?.child.kill('SIGTERM'); await p?.exited; }
    await api?.close();
  });

  const ids: Record<string, string> = {};

  it('creates, stages, snapshots, restores and expands through custom resources', async () => {
    ids.v1 = await until('volume created', () => createVolume('pvc-1', GiB));
    const cr = crs(VOLS).find((o) => o.metadata.name === ids.v1)!;
    assert.ok(cr.metadata.finalizers?.includes('dmthin.csi.io/device'), 'finalizer held while the device exists');
    await stagePublish(ids.v1);
    const fd = openSync(`${target(ids.v1)}/data.txt`, 'w');
    writeSync(fd, 'written before the snapshot\n');
    fsyncSync(fd);
    closeSync(fd);
    const snap = await csi.ctrl.controller.call('CreateSnapshot', { name: 'snap-1', source_volume_id: ids.v1 }, 180_000);
    assert.equal(snap.snapshot.ready_to_use, true);
    ids.s1 = snap.snapshot.snapshot_id;
    ids.v2 = await createVolume('pvc-restored', 2 * GiB, { snapshot: { snapshot_id: ids.s1 } });
    await stagePublish(ids.v2);
    assert.equal(readFileSync(`${target(ids.v2)}/data.txt`, 'utf8'), 'written before the snapshot\n');
    const exp = await csi.ctrl.controller.call('ControllerExpandVolume', { volume_id: ids.v1, capacity_range: { required_bytes: GiB + 256 * MiB } }, 180_000);
    assert.equal(Number(exp.capacity_bytes), GiB + 256 * MiB);
    await csi.node.node.call('NodeExpandVolume', { volume_id: ids.v1, volume_path: target(ids.v1), staging_target_path: staging(ids.v1) });
    assertConverged('after the flow');
  });

  it('converges after the node agent is SIGKILLed mid-operation', async () => {
    for (const [round, delay] of [300, 900, 1600].entries()) {
      const ops: Array<() => Promise<unknown>> = [
        () => createVolume(`pvc-crash-${round}`, 256 * MiB),
        () => csi.ctrl.controller.call('CreateSnapshot', { name: `snap-crash-${round}`, source_volume_id: ids.v1 }, 180_000),
      ];
      const inflight = ops.map((op) => op().catch(() => undefined));
      await new Promise((r) => setTimeout(r, delay));
      nodeProc!.child.kill('SIGKILL');
      await nodeProc!.exited;
      csi.node.close();
      nodeProc = startNode();
      csi.node = connectCsi(NODE_EP);
      await until('node ready again', () => ready(csi.node));
      await Promise.all(inflight);
      for (const op of ops) await until<unknown>(`round ${round} retried to success`, op); // the CO retries
      assertConverged(`after kill round ${round}`);
      assert.equal(readFileSync(`${target(ids.v1!)}/data.txt`, "utf8"), 'written before the snapshot\n');
    }
  });

  it('deletes everything, and the finalizers go only with the devices', async () => {
    for (const id of [ids.v1!, ids.v2!]) {
      await csi.node.node.call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
      await csi.node.node.call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
    }
    for (const o of crs(SNAPS)) await csi.ctrl.controller.call('DeleteSnapshot', { snapshot_id: o.metadata.name }, 180_000);
    for (const o of crs(VOLS)) await csi.ctrl.controller.call('DeleteVolume', { volume_id: o.metadata.name }, 180_000);
    assert.deepEqual([...crs(VOLS), ...crs(SNAPS)].map((o) => o.metadata.name), []);
    assert.deepEqual(poolThinIds(), []);
  });
});
