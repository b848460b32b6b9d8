// The driver under benchmark: one standalone process at a time, started and stopped by the
// orchestrator (bench/bench.ts), reached over its CSI socket and its /metrics endpoint.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../src/system/delay.ts';
import { connect, type Csi } from './lib.ts';

export interface DriverSettings {
  root: string;
  /** Where the logs of each start go. */
  work: string;
  state: string;
  endpoint: string;
  pool: string;
  metrics: string;
  nodeFlags: string[];
  logLevel: string;
}

export interface Running { child: ChildProcess; csi: Csi; log: string; exited: Promise<void> }

const now = () => performance.now();

export function tail(file: string, n = 30): string {
  try { return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
}

export class DriverProcess {
  current: Running | undefined;
  /** When the last start's socket appeared (ms after spawn): the reconcile runs before the server listens. */
  lastSocketMs = NaN;
  private runs = 0;
  private readonly s: DriverSettings;
  constructor(s: DriverSettings) { this.s = s; }

  get running(): Running {
    if (!this.current) throw new Error('the driver is not running');
    return this.current;
  }

  /** Spawns the driver and waits for Probe ready; resolves the ms from spawn to ready. */
  async start(): Promise<number> {
    const { s } = this;
    const logFile = join(s.work, `driver-${++this.runs}.log`);
    const fd = openSync(logFile, 'w');
    const t0 = now();
    const child = spawn(process.execPath, [...s.nodeFlags, join(s.root, 'dist/dmthin-csi.mjs'), 'standalone', '--state-dir', s.state, '--endpoint', s.endpoint, '--pool-name', s.pool,
      '--loop-data-size', '256Gi', '--loop-metadata-size', '1Gi', '--overprovision-ratio', '100', '--node-id', 'bench', '--metrics-address', s.metrics, '--log-level', s.logLevel],
    { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const csi = connect(s.endpoint);
    let sockMs = NaN;
    for (;;) {
      if (Number.isNaN(sockMs) && existsSync(s.endpoint.slice('unix://'.length))) sockMs = now() - t0;
      if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode}:\n${tail(logFile)}`);
      try {
        const r = await csi.identity.call<{ ready?: { value: boolean } }>('Probe', {}, 2000);
        if (r.ready?.value) break;
      } catch { /* not up yet */ }
      if (now() - t0 > 600_000) throw new Error(`driver not ready after 600 s:\n${tail(logFile)}`);
      await sleep(20);
    }
    this.lastSocketMs = sockMs;
    this.current = { child, csi, log: logFile, exited };
    return now() - t0;
  }

  async stop(): Promise<void> {
    const d = this.current;
    if (!d) return;
    d.csi.close();
    d.child.kill('SIGTERM');
    await d.exited;
    this.current = undefined;
  }

  async scrape(): Promise<string> {
    const r = await fetch(`http://${this.s.metrics}/metrics`);
    return r.text();
  }

  /** The transaction id the driver last recorded for its pool (its embedded store's pool record). */
  storedTx(): number {
    return (JSON.parse(readFileSync(join(this.s.state, 'store', 'pool.json'), 'utf8')) as { transactionId: number }).transactionId;
  }

  /**
   * Waits (untimed) for the stamp the driver sends after replying to a change that was recorded
   * at `before`, so it never runs under another contender's clock. False if none came in 10 s.
   */
  async stamped(before: number): Promise<boolean> {
    for (const t0 = now(); now() - t0 < 10_000; await sleep(10)) {
      if (this.storedTx() > before) return true;
    }
    return false;
  }
}
