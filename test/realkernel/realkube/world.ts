/**
 * The chart's pods without a kubelet: the controller Deployment's containers (our controller and
 * the real sidecars, sharing a socket directory as the pod's emptyDir) and the node DaemonSet's
 * container, each started with the rendered command line and authenticated as the chart's
 * ServiceAccount through a TokenRequest token. Node and CSINode are registered as kubelet would.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { connectCsi, type CsiClients } from '../../support/csi-client.ts';
import { container, expand, installChart, NS, RELEASE, serviceAccountToken, writeKubeconfig, type Obj } from './chart.ts';
import { binaries, ControlPlane, launch, stop, type Proc } from './cluster.ts';
import { sleep } from '../../../src/system/delay.ts';

export const DRIVER = 'dmthin.csi.io';
export const TOPOLOGY_KEY = 'dmthin.csi.io/node';
export const RUN = '/run/realkube';

/**
 * `it` for steps that build on each other: after one fails the rest fail at once instead of
 * waiting out their timeouts. `onFailure` says more about the failure before it is thrown.
 */
export function gatedSteps(onFailure: (name: string, err: unknown) => Promise<void> | void = () => undefined) {
  let failed = '';
  return (name: string, fn: () => Promise<void> | void): void => {
    it(name, async () => {
      if (failed) throw new Error(`not run: "${failed}" failed first`);
      try {
        await fn();
      } catch (err) {
        failed = name;
        await onFailure(name, err);
        throw err;
      }
    });
  };
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 600_000): Promise<Exclude<T, false>> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as Exclude<T, false>;
    } catch (err) { last = err; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(300);
  }
}

/** A container kept running as kubelet keeps it (restartPolicy Always), until stopped. */
export class Container {
  proc: Proc | undefined;
  private stopped = false;
  restarts = 0;
  readonly name: string;
  private readonly start: () => Proc;

  constructor(name: string, start: () => Proc) {
    this.name = name;
    this.start = start;
    this.run();
  }

  private run(): void {
    const p = this.start();
    this.proc = p;
    void p.exited.then(() => {
      if (this.stopped || this.proc !== p) return;
      this.restarts++;
      setTimeout(() => { if (!this.stopped && this.proc === p) this.run(); }, 1000).unref();
    });
  }

  /** SIGKILL now; kubelet would start it again, and so does this one unless `stay` is set. */
  async kill(stay = false): Promise<void> {
    if (stay) this.stopped = true;
    await stop(this.proc, 'SIGKILL');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await stop(this.proc);
  }
}

export interface WorldOptions { root: string; logs: string; node: string; apiserver?: string; etcdPort?: number; apiPort?: number }

export class RealKube {
  readonly plane: ControlPlane;
  readonly o: WorldOptions;
  objs: Obj[] = [];
  kubeconfigs: Record<string, string> = {};
  pods: Record<string, Container[]> = {};
  nodeAgent: Container | undefined;
  nodeCsi: CsiClients | undefined;
  private readonly bin: string;

  constructor(o: WorldOptions) {
    this.o = o;
    this.plane = new ControlPlane({ ...o, dir: join(RUN, 'plane') });
    this.bin = binaries(o.root);
  }

  get api() { return this.plane.admin; }
  get nodeSocket() { return join(RUN, 'node', 'csi.sock'); }

  /** Control plane up, chart installed, kubeconfigs made from TokenRequest tokens. */
  async install(snapshotCrds: string): Promise<void> {
    rmSync(RUN, { recursive: true, force: true });
    mkdirSync(join(RUN, 'bin'), { recursive: true });
    await this.plane.start();
    this.objs = await installChart(this.api, this.o.root, snapshotCrds);
    for (const sa of [`${RELEASE}-controller`, `${RELEASE}-node`]) {
      this.kubeconfigs[sa] = writeKubeconfig(join(RUN, `${sa}.kubeconfig`), this.plane.apiUrl, await serviceAccountToken(this.api, sa), sa);
    }
    this.kubeconfigs.admin = writeKubeconfig(join(RUN, 'admin.kubeconfig'), this.plane.apiUrl, this.api.token, 'admin');
    // The image's entry point: `dmthin-csi` on PATH runs the bundled driver.
    writeFileSync(join(RUN, 'bin', 'dmthin-csi'), `#!/bin/sh\nexec ${process.execPath} ${join(this.o.root, 'dist', 'dmthin-csi.mjs')} "$@"\n`);
    chmodSync(join(RUN, 'bin', 'dmthin-csi'), 0o755);
  }

  /** Node registered as kubelet does on start: the Node object first, before any pod runs on it. */
  async registerNode(): Promise<void> {
    await this.api.create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: this.o.node, labels: { 'kubernetes.io/hostname': this.o.node } } });
  }

  /**
   * The DaemonSet's container: its `sh -c` command as rendered, with the pool ConfigMap mounted
   * where it says and the pod's volumes at local paths (sockets under RUN).
   */
  startNodeAgent(): Container {
    const c = container(this.objs, 'DaemonSet', `${RELEASE}-node`, 'dmthin-csi');
    const pools = join(RUN, 'pools');
    mkdirSync(pools, { recursive: true });
    const cm = this.objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === `${RELEASE}-pools`)!;
    for (const [k, v] of Object.entries(cm.data as Record<string, string>)) writeFileSync(join(pools, k), v);
    mkdirSync(join(RUN, 'node'), { recursive: true });
    const script = c.command![2]!.replaceAll('/etc/dmthin-csi/pools', pools).replaceAll('unix:///csi/csi.sock', `unix://${this.nodeSocket}`);
    const env = { NODE_NAME: this.o.node, KUBECONFIG: this.kubeconfigs[`${RELEASE}-node`]!, PATH: `${join(RUN, 'bin')}:${process.env.PATH}` };
    let n = 0;
    this.nodeAgent = new Container('node', () => launch(c.command![0]!, [c.command![1]!, script], join(this.o.logs, `node-${++n}.log`), env));
    return this.nodeAgent;
  }

  /** A fresh client after the agent restarted: one that lost its socket waits out grpc's reconnect backoff. */
  reconnectNode(): void {
    this.nodeCsi?.close();
    this.nodeCsi = connectCsi(`unix://${this.nodeSocket}`);
  }

  /**
   * After plugin registration kubelet asks NodeGetInfo, labels the Node with the topology
   * segments and records the driver in CSINode: external-provisioner reads both.
   */
  async registerPlugin(): Promise<void> {
    this.reconnectNode();
    const info: Record<string, any> = await until('NodeGetInfo', () => this.nodeCsi!.node.call('NodeGetInfo', {}, 5000));
    const segments = info.accessible_topology.segments as Record<string, string>;
    await this.api.mergePatch(`/api/v1/nodes/${this.o.node}`, { metadata: { labels: segments } });
    await this.api.create('/apis/storage.k8s.io/v1/csinodes', {
      apiVersion: 'storage.k8s.io/v1', kind: 'CSINode', metadata: { name: this.o.node, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.o.node, uid: (await this.api.get(`/api/v1/nodes/${this.o.node}`)).metadata.uid }] },
      spec: { drivers: [{ name: DRIVER, nodeID: info.node_id, topologyKeys: Object.keys(segments) }] },
    });
  }

  /**
   * One replica of the controller Deployment: each container's args as rendered, $(VAR) expanded
   * from the pod's env, the emptyDir at RUN/<pod>. `overrides` are the flags these sidecar
   * versions need instead of the chart's (see the README's table).
   */
  startControllerPod(pod: string, names: string[], overrides: Record<string, Record<string, string[]>>): Container[] {
    const dir = join(RUN, pod);
    mkdirSync(dir, { recursive: true });
    const podEnv = { NAMESPACE: NS, POD_NAMESPACE: NS, POD_NAME: pod };
    const kubeconfig = this.kubeconfigs[`${RELEASE}-controller`]!;
    const out = names.map((name) => {
      const c = container(this.objs, 'Deployment', `${RELEASE}-controller`, name);
      let args = expand(c.args ?? [], podEnv).map((a) => a.replaceAll('/csi/csi.sock', join(dir, 'csi.sock')));
      for (const [flag, repl] of Object.entries(overrides[name] ?? {})) args = args.filter((a) => !a.startsWith(`--${flag}`)).concat(repl);
      let n = 0;
      if (name === 'dmthin-csi') {
        return new Container(`${pod}/${name}`, () => launch(join(RUN, 'bin', 'dmthin-csi'), args, join(this.o.logs, `${pod}-${name}-${++n}.log`), { ...podEnv, KUBECONFIG: kubeconfig }));
      }
      return new Container(`${pod}/${name}`, () => launch(join(this.bin, name), [...args, `--kubeconfig=${kubeconfig}`], join(this.o.logs, `${pod}-${name}-${++n}.log`), podEnv));
    });
    this.pods[pod] = out;
    return out;
  }

  /** The cluster's snapshot-controller (not the chart's), with cluster-admin rights as it has in a cluster. */
  startSnapshotController(): Container {
    let n = 0;
    const c = new Container('snapshot-controller', () => launch(join(this.bin, 'snapshot-controller'),
      [`--kubeconfig=${this.kubeconfigs.admin}`, '--leader-election=false', '--v=2'], join(this.o.logs, `snapshot-controller-${++n}.log`)));
    this.pods['snapshot-controller'] = [c];
    return c;
  }

  async probe(socket: string): Promise<boolean> {
    const c = connectCsi(`unix://${socket}`);
    try {
      return (await c.identity.call('Probe', {}, 5000)).ready?.value === true;
    } finally {
      c.close();
    }
  }

  async stop(): Promise<void> {
    this.nodeCsi?.close();
    for (const cs of Object.values(this.pods)) for (const c of cs) await c.stop();
    await this.nodeAgent?.stop();
    await this.plane.stop();
  }
}
