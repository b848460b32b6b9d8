// The bench's processes: the controller (the real `controller` subcommand) and the hosts of
// simulated nodes (bench/cluster/host.ts), with their CPU time and RSS read from /proc.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostRequest, HostStats } from './host.ts';
import { connectCsi, type CsiClients } from '../../test/support/csi-client.ts';
import { sleep } from '../../src/system/delay.ts';

const TICK_MS = 10; // USER_HZ is 100 on Linux

export interface Usage { cpuMs: number; rssBytes: number }

/** CPU time (user + system) and resident memory of a live process. */
export function usage(pid: number): Usage {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuMs = (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime: fields 14 and 15
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuMs, rssBytes: Number(rss?.[1] ?? 0) * 1024 };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

export interface ControllerOptions { root: string; dir: string; kubeconfig: string; bundle: boolean }

/** The controller process: the bundle's `controller` subcommand, or src/cli/main.ts. */
export class Controller {
  readonly endpoint: string;
  child: ChildProcess | undefined;
  csi: CsiClients | undefined;
  private starts = 0;
  private readonly o: ControllerOptions;

  constructor(o: ControllerOptions) {
    this.o = o;
    this.endpoint = `unix://${join(o.dir, 'controller.sock')}`;
  }

  get pid(): number { return this.child!.pid!; }

  /** Spawns it and waits until its Probe says ready; returns the time that took (ms). */
  async start(): Promise<number> {
    const main = this.o.bundle ? join(this.o.root, 'dist', 'dmthin-csi.mjs') : join(this.o.root, 'src', 'cli', 'main.ts');
    if (!existsSync(main)) throw new Error(`${main} is missing (npm run build)`);
    const fd = openSync(join(this.o.dir, `controller-${++this.starts}.log`), 'a');
    const t0 = performance.now();
    // The image's command line (Dockerfile): what a cluster runs.
    this.child = spawn(process.execPath, ['--enable-source-maps', '--optimize-for-size', main, 'controller', '--endpoint', this.endpoint], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=2', NODE_ENV: 'production', KUBECONFIG: this.o.kubeconfig, POD_NAME: 'cbench-controller', POD_NAMESPACE: 'kube-system', LOG_LEVEL: 'warn' },
    });
    closeSync(fd);
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`controller exited with ${this.child.exitCode}; see ${this.o.dir}/controller-${this.starts}.log`);
      // A fresh channel per attempt: one that found no socket backs off (up to 2 minutes in
      // grpc-js) and would time the client's backoff, not the controller's start.
      const probe = connectCsi(this.endpoint);
      const ready = await probe.identity.call<{ ready?: { value: boolean } }>('Probe', {}, 2000).then((r) => r.ready?.value === true, () => false);
      probe.close();
      if (ready) {
        this.csi = connectCsi(this.endpoint);
        return performance.now() - t0;
      }
      if (performance.now() - t0 > 120_000) throw new Error('controller not Probe-ready after 120 s');
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.csi?.close();
    if (!this.child) return;
    this.child.kill('SIGTERM');
    await exited(this.child);
  }
}

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void }

/** One process of simulated nodes, spoken to over IPC. */
export class Host {
  readonly nodes: string[];
  readonly child: ChildProcess;
  readonly ready: Promise<number>;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(root: string, kubeconfig: string, nodes: string[], log: string) {
    this.nodes = nodes;
    const fd = openSync(log, 'a');
    this.child = fork(join(root, 'bench', 'cluster', 'host.ts'), [], {
      stdio: ['ignore', fd, fd, 'ipc'],
      env: { ...process.env, KUBECONFIG: kubeconfig, BENCH_NODES: nodes.join(',') },
    });
    closeSync(fd);
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => reject(new Error(`node host exited with ${code} before it was ready; see ${log}`)));
      this.child.on('message', (m: { ready?: boolean; ms?: number; id?: number; res?: unknown; error?: string }) => {
        if (m.ready) return resolve(m.ms!);
        const p = this.pending.get(m.id!);
        this.pending.delete(m.id!);
        if (m.error) p?.reject(new Error(m.error));
        else p?.resolve(m.res);
      });
    });
  }

  get pid(): number { return this.child.pid!; }

  call<T>(req: HostRequest): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, req });
    });
  }

  stats(): Promise<HostStats> { return this.call<HostStats>({ op: 'stats' }); }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = exited(this.child);
    await this.call({ op: 'stop' }).catch(() => undefined);
    await gone;
  }
}

/** N node names spread over hosts of at most `perHost` nodes each. */
export function startHosts(root: string, kubeconfig: string, nodes: string[], perHost: number, logDir: string): Host[] {
  const hosts: Host[] = [];
  for (let i = 0; i < nodes.length; i += perHost) hosts.push(new Host(root, kubeconfig, nodes.slice(i, i + perHost), join(logDir, `host-${hosts.length}.log`)));
  return hosts;
}
