/**
 * What the Kubernetes-mode real-kernel suites share: the API server test double in the test
 * process, the real `dmthin-csi controller` and `dmthin-csi node` processes against it and a
 * real pool, CSI clients for both, and the convergence check every crash round ends with.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { startApiDouble, type ApiDouble } from '../doubles/kube-api/index.ts';
import { connectCsi, mountCap, type CsiClients } from '../support/csi-client.ts';
import { KUBELET, liveThins, LOGS, POOL, poolThinIds, ROOT, STATE, SUITE } from './harness.ts';
import { sleep } from '../../src/system/delay.ts';
import { launchDriver, Spares } from './warm.ts';

export const VOLS = 'thinvolumes.dmthin.csi.io';
export const SNAPS = 'thinsnapshots.dmthin.csi.io';
export const GROUPS = 'thingroupsnapshots.dmthin.csi.io';
const SETTLED = new Set(['Created', 'Activated', 'Deactivated', 'Resumed']);

export type Cr = { metadata: { name: string; finalizers?: string[] }; status?: { state?: string; deviceId?: number; sizeBytes?: number } };
export interface Proc { child: ChildProcess; exited: Promise<unknown>; log: string }

export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 180_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await sleep(200);
  }
}

export const staging = (v: string) => `${KUBELET}/staging/${v}`;
export const target = (v: string) => `${KUBELET}/pods/${v}`;

/** One node, its agent process, the controller process and the API double they share. */
export class KubeWorld {
  readonly node = `rk-${SUITE}-node`;
  readonly nodeEp = `unix:///run/dmthin-rk-${SUITE}/node.sock`;
  readonly ctrlEp = `unix:///run/dmthin-rk-${SUITE}/controller.sock`;
  api!: ApiDouble;
  nodeProc: Proc | undefined;
  ctrlProc: Proc | undefined;
  csi!: { node: CsiClients; ctrl: CsiClients };
  private kubeconfig = '';
  private starts = 0;
  private readonly spares: Spares | undefined;

  /** `warmRestarts`: for a suite that restarts the agent after every kill (warm.ts). */
  constructor(o: { warmRestarts?: boolean } = {}) {
    this.spares = o.warmRestarts ? new Spares(ROOT, `/run/dmthin-rk-${SUITE}/gates`) : undefined;
  }

  get topology() {
    const seg = { segments: { 'dmthin.csi.io/node': this.node } };
    return { preferred: [seg], requisite: [seg] };
  }

  async start(): Promise<void> {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(STATE, { recursive: true });
    mkdirSync(`/run/dmthin-rk-${SUITE}`, { recursive: true }); // the sockets' directory: the kube modes never make it
    const crds = ['thinpools', 'thinvolumes', 'thinsnapshots', 'thingroupsnapshots'].map((p) => load(readFileSync(join(ROOT, `deploy/crds/dmthin.csi.io_${p}.yaml`), 'utf8')));
    this.api = await startApiDouble({ crds });
    await this.api.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: this.node } }); // a live node keeps its finalizers
    this.kubeconfig = join(STATE, 'kubeconfig');
    writeFileSync(this.kubeconfig, this.api.kubeConfig().exportConfig());
    this.ctrlProc = this.launch(['controller', '--endpoint', this.ctrlEp, '--lease-namespace', 'default']);
    this.csi = { node: connectCsi(this.nodeEp), ctrl: connectCsi(this.ctrlEp) };
    await this.startNode();
    await until('controller ready', () => this.probeFresh(this.ctrlEp));
    this.csi.ctrl.close();
    this.csi.ctrl = connectCsi(this.ctrlEp);
    await until('node pool published', async () => ((this.crs('thinpools.dmthin.csi.io')[0] as { status?: object } | undefined)?.status ? true : undefined));
  }

  async stop(): Promise<void> {
    this.csi?.node.close();
    this.csi?.ctrl.close();
    await this.spares?.stop();
    for (const p of [this.nodeProc, this.ctrlProc]) { p?.child.kill('SIGTERM'); await p?.exited; }
    await this.api?.close();
  }

  private logFor(command: string): string {
    mkdirSync(LOGS, { recursive: true });
    return join(LOGS, `${SUITE}-${command}-${++this.starts}.log`);
  }

  private get baseEnv(): NodeJS.ProcessEnv {
    return { ...process.env, KUBECONFIG: this.kubeconfig, POD_NAME: 'rk-controller', POD_NAMESPACE: 'default' };
  }

  launch(args: string[], env: Record<string, string> = {}): Proc {
    return launchDriver(ROOT, args, { ...this.baseEnv, ...env }, this.logFor(args[0]!));
  }

  /**
   * (Re)starts the node agent, after SIGKILLing a running one, and waits until it is ready. With
   * warm restarts, the next agent's code loads once this one is ready (warm.ts).
   */
  async startNode(env: Record<string, string> = {}): Promise<void> {
    if (this.nodeProc && this.nodeProc.child.exitCode === null && this.nodeProc.child.signalCode === null) {
      this.nodeProc.child.kill('SIGKILL');
      await this.nodeProc.exited;
    }
    this.csi.node.close();
    this.nodeProc = this.spares ? this.spares.start(this.nodeArgs, this.baseEnv, env, this.logFor('node')) : this.launch(this.nodeArgs, env);
    await until('node ready', () => this.probeFresh(this.nodeEp));
    this.csi.node = connectCsi(this.nodeEp);
    this.spares?.prepare(this.nodeArgs, this.baseEnv, this.logFor('node'));
  }

  private get nodeArgs(): string[] {
    return ['node', '--node-id', this.node, '--endpoint', this.nodeEp, '--state-dir', STATE, '--pool-name', POOL,
      '--loop-data-size', '32Gi', '--loop-metadata-size', '64Mi', '--log-level', 'debug'];
  }

  ready(c: CsiClients): Promise<true | undefined> {
    return c.identity.call('Probe', {}, 5000).then((r) => (r.ready?.value ? true : undefined));
  }

  /** A client per attempt: one that found no socket would wait out grpc's reconnect backoff. */
  async probeFresh(endpoint: string): Promise<true | undefined> {
    const c = connectCsi(endpoint);
    try {
      return await this.ready(c);
    } finally {
      c.close();
    }
  }

  crs(plural: string): Cr[] {
    return this.api.objects(plural) as unknown as Cr[];
  }

  async createVolume(name: string, size: number, source?: object): Promise<string> {
    const r = await this.csi.ctrl.controller.call('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [mountCap()], accessibility_requirements: this.topology, volume_content_source: source ?? null }, 180_000);
    return r.volume.volume_id as string;
  }

  async stagePublish(id: string): Promise<void> {
    await this.csi.node.node.call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: mountCap() });
    await this.csi.node.node.call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: mountCap(), readonly: false });
  }

  /** Every resource settled, nothing suspended, and the pool's thin ids are exactly the resources' ids. */
  assertConverged(context: string): void {
    const all = [...this.crs(VOLS), ...this.crs(SNAPS)];
    assert.deepEqual(all.filter((o) => !SETTLED.has(o.status?.state ?? '')).map((o) => `${o.metadata.name}:${o.status?.state}`), [], `${context}: every resource settled`);
    assert.deepEqual(this.crs(GROUPS).filter((o) => o.status?.state !== 'Ready').map((o) => `${o.metadata.name}:${o.status?.state}`), [], `${context}: every group snapshot Ready`);
    assert.deepEqual(liveThins().filter((t) => t.suspended), [], `${context}: nothing suspended`);
    const ids = all.map((o) => o.status!.deviceId!).sort((a, b) => a - b);
    assert.deepEqual(poolThinIds().sort((a, b) => a - b), ids, `${context}: pool thin ids == resources' device ids`);
  }
}
