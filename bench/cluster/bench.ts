// The cluster bench: the phases and their measurements. bench/cluster/main.ts is the command
// line; test/unit/bench/cluster-bench.test.ts runs a small configuration.
import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { GROUP, PLURAL, VERSION } from '../../src/kube/types.ts';
import { sleep } from '../../src/system/delay.ts';
import { BenchPlane, type Counts, delta } from './plane.ts';
import { Controller, startHosts, usage, type Host } from './procs.ts';
import type { AgentStats } from './host.ts';
import { createSnapshot, createVolume, deleteSnapshot, deleteVolume, floorCreate, floorDelete, runPool, type Timed } from './workload.ts';
import { percentile, type Phase, type Result, type ScaleSample } from './report.ts';

export interface BenchOptions {
  root: string;
  dir: string;
  nodes: number;
  volumes: number;
  /** Simulated nodes per process. */
  perHost: number;
  /** Volumes created and deleted at concurrency 1 and 16 (concurrency 64 takes all `volumes`). */
  small: Record<number, number>;
  /** Volumes whose snapshot is taken, restored and deleted (concurrency 16). */
  snapshots: number;
  /** A scale sample every this many volumes in the concurrency-64 create. */
  sampleEvery: number;
  /** The bundle (dist/) or src/cli/main.ts for the controller. */
  bundle: boolean;
  /** Seconds of idle requests measured first, to subtract the background (resyncs, leases). */
  idleSeconds: number;
  log?: (line: string) => void;
}

const ports = () => 20000 + Math.floor(Math.random() * 20000);

export async function runClusterBench(o: BenchOptions): Promise<Result> {
  const log = o.log ?? (() => undefined);
  mkdirSync(o.dir, { recursive: true });
  const base = ports();
  const plane = new BenchPlane({ root: o.root, dir: join(o.dir, 'plane'), logs: join(o.dir, 'logs'), etcdPort: base, apiPort: base + 2 });
  const ctl = new Controller({ root: o.root, dir: o.dir, kubeconfig: join(o.dir, 'admin.kubeconfig'), bundle: o.bundle });
  let hosts: Host[] = [];
  const loadBefore = loadavg();
  try {
    await plane.up(o.root, o.dir);
    log(`control plane up (${plane.apiUrl})`);
    await ctl.start();
    const nodes = Array.from({ length: o.nodes }, (_, i) => `node-${String(i).padStart(3, '0')}`);
    await plane.registerNodes(nodes);
    hosts = startHosts(o.root, plane.kubeconfig, nodes, o.perHost, join(o.dir, 'logs'));
    const startMs = Math.max(...await Promise.all(hosts.map((h) => h.ready)));
    log(`${nodes.length} simulated nodes in ${hosts.length} processes, up in ${(startMs / 1000).toFixed(1)} s`);
    const r = new Run(o, plane, ctl, hosts, nodes, log);
    await r.idle();
    for (const c of [1, 16]) await r.lifecycle(c, o.small[c] ?? 0);
    await r.big();
    return r.result(loadBefore);
  } finally {
    await ctl.stop().catch(() => undefined);
    for (const h of hosts) await h.stop().catch(() => undefined);
    await plane.stop().catch(() => undefined);
  }
}

class Run {
  readonly phases: Phase[] = [];
  readonly scale: ScaleSample[] = [];
  background: Counts = {};
  backgroundSeconds = 0;
  restarts = { controllerMs: 0, controllerObjects: 0, agentMs: 0, agentVolumes: 0 };
  etcd = { volumes: 0, storedBytesPerVolume: 0, dbInUseBytesPerVolume: 0 };
  snapshots: Phase[] = [];
  watchBeforeRestart: AgentStats[] = [];
  private seq = 0;

  readonly o: BenchOptions;
  readonly plane: BenchPlane;
  readonly ctl: Controller;
  readonly hosts: Host[];
  readonly nodes: string[];
  readonly log: (l: string) => void;

  constructor(o: BenchOptions, plane: BenchPlane, ctl: Controller, hosts: Host[], nodes: string[], log: (l: string) => void) {
    this.o = o;
    this.plane = plane;
    this.ctl = ctl;
    this.hosts = hosts;
    this.nodes = nodes;
    this.log = log;
  }

  private get csi() { return this.ctl.csi!.controller; }

  /** The requests that happen with no volume traffic: resyncs, ThinPool refreshes, leases. */
  async idle(): Promise<void> {
    if (this.o.idleSeconds <= 0) return;
    const before = await this.plane.requests();
    await sleep(this.o.idleSeconds * 1000);
    this.background = delta(await this.plane.requests(), before);
    this.backgroundSeconds = this.o.idleSeconds;
  }

  /** Runs one timed step and records its requests (apiserver_request_total deltas). */
  private async measured(name: string, who: 'driver' | 'floor', concurrency: number, n: number, step: () => Promise<Timed>): Promise<Phase> {
    const before = await this.plane.requests();
    const t = await step();
    const requests = delta(await this.plane.requests(), before);
    const ok = t.latenciesMs.length;
    const p: Phase = {
      name, who, concurrency, n, ok, failures: t.failures.slice(0, 5), failureCount: t.failures.length,
      wallMs: t.wallMs, perSecond: ok / (t.wallMs / 1000),
      p50Ms: percentile(t.latenciesMs, 0.5), p99Ms: percentile(t.latenciesMs, 0.99), requests,
    };
    this.log(`${who} ${name} c=${concurrency}: ${ok}/${n} in ${(t.wallMs / 1000).toFixed(1)} s = ${p.perSecond.toFixed(1)}/s, p50 ${p.p50Ms.toFixed(0)} ms, p99 ${p.p99Ms.toFixed(0)} ms${t.failures.length ? `, ${t.failures.length} failed: ${t.failures[0]}` : ''}`);
    this.phases.push(p);
    return p;
  }

  private names(n: number): string[] {
    const run = ++this.seq;
    return Array.from({ length: n }, (_, i) => `pvc-r${run}-${i}`);
  }

  private nodeOf(i: number): string { return this.nodes[i % this.nodes.length]!; }

  async createAll(c: number, names: string[], onDone?: (d: number) => Promise<void>): Promise<string[]> {
    const ids: string[] = [];
    await this.measured('create', 'driver', c, names.length, () => runPool(names.length, c, async (i) => {
      ids[i] = await createVolume(this.csi, names[i]!, this.nodeOf(i), this.nodes);
    }, onDone));
    return ids;
  }

  async deleteAll(c: number, ids: string[]): Promise<void> {
    const live = ids.filter(Boolean);
    await this.measured('delete', 'driver', c, live.length, () => runPool(live.length, c, (i) => deleteVolume(this.csi, live[i]!)));
  }

  async floor(c: number, n: number): Promise<void> {
    const names = this.names(n).map((x) => `floor-${x}`);
    await this.measured('create', 'floor', c, n, () => runPool(n, c, (i) => floorCreate(this.plane.admin, names[i]!, i)));
    await this.measured('delete', 'floor', c, n, () => runPool(n, c, (i) => floorDelete(this.plane.admin, names[i]!)));
  }

  async lifecycle(c: number, n: number): Promise<void> {
    if (n <= 0) return;
    const ids = await this.createAll(c, this.names(n));
    await this.deleteAll(c, ids);
    await this.floor(c, n);
  }

  /** Concurrency 64 with every volume: scale samples, etcd, restarts, snapshots, then the deletes. */
  async big(): Promise<void> {
    const c = 64;
    const n = this.o.volumes;
    await this.sample(0);
    const ids = await this.createAll(c, this.names(n), async (done) => {
      if (done % this.o.sampleEvery === 0) await this.sample(done);
    });
    await this.measureEtcd(ids.filter(Boolean).length);
    this.watchBeforeRestart = await this.watchStats();
    await this.restart(ids.filter(Boolean).length);
    await this.snapshotPhase(ids.filter(Boolean).slice(0, this.o.snapshots));
    await this.deleteAll(c, ids);
    await this.floor(c, n);
  }

  private async sample(volumes: number): Promise<void> {
    const ctl = usage(this.ctl.pid);
    const hosts = this.hosts.map((h) => usage(h.pid));
    this.scale.push({
      volumes, controllerCpuMs: ctl.cpuMs, controllerRssBytes: ctl.rssBytes,
      agentsCpuMs: hosts.reduce((a, h) => a + h.cpuMs, 0), hostRssBytes: hosts.map((h) => h.rssBytes),
    });
  }

  private async measureEtcd(volumes: number): Promise<void> {
    const s = await this.plane.stored(`/registry/${GROUP}/${PLURAL.volume}/`);
    const db = await this.plane.dbSize();
    this.etcd = { volumes: s.count, storedBytesPerVolume: s.bytes / Math.max(1, s.count), dbInUseBytesPerVolume: db.dbSizeInUse / Math.max(1, volumes) };
    this.log(`etcd: ${s.count} ThinVolumes, ${this.etcd.storedBytesPerVolume.toFixed(0)} B stored each; db in use ${(db.dbSizeInUse / 1048576).toFixed(1)} MiB`);
  }

  /** The controller, then one agent (the first node's), each stopped and started again to Probe-ready. */
  private async restart(objects: number): Promise<void> {
    await this.ctl.stop();
    this.restarts.controllerMs = await this.ctl.start();
    this.restarts.controllerObjects = objects;
    const node = this.nodes[0]!;
    const list = await this.plane.admin.get(`/apis/${GROUP}/${VERSION}/${PLURAL.volume}?labelSelector=${encodeURIComponent(`dmthin.csi.io/node=${node}`)}`);
    this.restarts.agentVolumes = list.items.length;
    const host = this.hosts.find((h) => h.nodes.includes(node))!;
    this.restarts.agentMs = (await host.call<{ ms: number }>({ op: 'restart', node })).ms;
    this.log(`restart: controller ${this.restarts.controllerMs.toFixed(0)} ms with ${objects} objects; agent ${this.restarts.agentMs.toFixed(0)} ms with ${this.restarts.agentVolumes} volumes`);
  }

  /** csi-snapshotter's and a restore's calls: snapshot, volume from it, then both deleted. */
  private async snapshotPhase(sources: string[]): Promise<void> {
    if (sources.length === 0) return;
    const c = 16;
    const snaps: string[] = [];
    const restores: string[] = [];
    const before = this.phases.length;
    await this.measured('snapshot', 'driver', c, sources.length, () => runPool(sources.length, c, async (i) => { snaps[i] = await createSnapshot(this.csi, `snap-r${this.seq}-${i}`, sources[i]!); }));
    await this.measured('restore', 'driver', c, sources.length, () => runPool(sources.length, c, async (i) => {
      restores[i] = await createVolume(this.csi, `pvc-restore-${this.seq}-${i}`, this.nodeOf(i), this.nodes, snaps[i]);
    }));
    await this.measured('delete restore', 'driver', c, sources.length, () => runPool(sources.length, c, (i) => deleteVolume(this.csi, restores[i]!)));
    await this.measured('delete snapshot', 'driver', c, sources.length, () => runPool(sources.length, c, (i) => deleteSnapshot(this.csi, snaps[i]!)));
    this.snapshots = this.phases.splice(before);
  }

  async watchStats(): Promise<AgentStats[]> {
    return (await Promise.all(this.hosts.map((h) => h.stats()))).flatMap((s) => s.agents);
  }

  async result(loadBefore: number[]): Promise<Result> {
    const left = await this.plane.admin.get(`/apis/${GROUP}/${VERSION}/${PLURAL.volume}`);
    const leftSnaps = await this.plane.admin.get(`/apis/${GROUP}/${VERSION}/${PLURAL.snapshot}`);
    return {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, loadBefore, loadAfter: loadavg() },
      config: { nodes: this.o.nodes, volumes: this.o.volumes, perHost: this.o.perHost, hosts: this.hosts.length, small: this.o.small, snapshots: this.o.snapshots, controller: this.o.bundle ? 'bundle' : 'src' },
      phases: this.phases, snapshots: this.snapshots, scale: this.scale,
      background: { seconds: this.backgroundSeconds, requests: this.background },
      watch: { beforeRestart: this.watchBeforeRestart, atEnd: await this.watchStats() },
      restarts: this.restarts, etcd: this.etcd,
      leftover: { volumes: left.items.length, snapshots: leftSnaps.items.length },
      lists: await this.plane.lists(),
    };
  }
}
