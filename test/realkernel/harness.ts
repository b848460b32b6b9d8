import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectCsi, type CsiClients } from '../support/csi-client.ts';
import type { DeviceRecord, GroupRecord } from '../../src/state/types.ts';
import { sleep } from '../../src/system/delay.ts';
import { launchDriver, Spares } from './warm.ts';

/** Everything the real-kernel suites share: where the driver lives and how to look under it. */
export const ROOT = process.cwd();
/** Each suite file runs in its own process and gets its own pool, state and socket. */
export const SUITE = (process.argv[1] ?? 'suite').replace(/^.*\//, '').replace(/\..*$/, '');
export const STATE = `/var/lib/dmthin-rk-${SUITE}`;
export const ENDPOINT = `unix:///run/dmthin-rk-${SUITE}/csi.sock`;
export const POOL = `dmthin-rk-${SUITE}`;
export const KUBELET = `/var/lib/kubelet-rk-${SUITE}`;
export const LOGS = join(ROOT, '.cache', 'realkernel');

let runs = 0;

export interface DriverProcess { child: ChildProcess; clients: CsiClients; log: string; exited: Promise<number | null> }

/** Starts the bundled driver in standalone mode and waits until Probe answers ready. */
let spares: Spares | undefined;

/** For a suite that restarts the driver after every kill: each next driver's code loads while the last one runs (warm.ts). */
export function warmRestarts(): { stop: () => Promise<void> } {
  spares ??= new Spares(ROOT, `/run/dmthin-rk-${SUITE}/gates`);
  return { stop: async () => { await spares?.stop(); spares = undefined; } };
}

function logFile(): string {
  mkdirSync(LOGS, { recursive: true });
  return join(LOGS, `${SUITE}-driver-${++runs}.log`);
}

export async function startDriver(extra: string[] = [], env: Record<string, string> = {}): Promise<DriverProcess> {
  // The metadata file is allocated in full (guest RAM under the VM's tmpfs): 64 MiB maps far more than a suite writes.
  const args = ['standalone', '--state-dir', STATE, '--endpoint', ENDPOINT,
    '--pool-name', POOL, '--loop-data-size', '64Gi', '--loop-metadata-size', '64Mi', '--node-id', 'rk-node', '--log-level', 'info', ...extra];
  const { child, log, exited } = spares ? spares.start(args, process.env, env, logFile()) : launchDriver(ROOT, args, { ...process.env, ...env }, logFile());
  const d = await untilReady(child, log, exited);
  spares?.prepare(args, process.env, logFile());
  return d;
}

async function untilReady(child: ChildProcess, log: string, exited: Promise<number | null>): Promise<DriverProcess> {
  const until = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode} during start:\n${tail(log)}`);
    // A client per attempt: one that found no socket would wait out grpc's reconnect backoff.
    const probe = connectCsi(ENDPOINT);
    try {
      const r = await probe.identity.call<{ ready: { value: boolean } }>('Probe', {}, 5000);
      if (r.ready?.value) return { child, clients: connectCsi(ENDPOINT), log, exited };
    } catch { /* not listening yet */ } finally {
      probe.close();
    }
    if (Date.now() > until) {
      child.kill('SIGKILL'); // else it keeps the state directory's lock and every later start fails on it
      await exited;
      throw new Error(`driver did not become ready:\n${tail(log)}`);
    }
    await sleep(250);
  }
}

export async function stopDriver(d: DriverProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  d.clients.close();
  d.child.kill(signal);
  return d.exited;
}

export function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
}

/** The driver's records as stored on disk by its embedded store. */
export function records(): DeviceRecord[] {
  const dir = join(STATE, 'store', 'devices');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as DeviceRecord);
}

/** The driver's group snapshot records, as stored by its embedded store. */
export function groupRecords(): GroupRecord[] {
  const dir = join(STATE, 'store', 'groups');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as GroupRecord);
}

export function storedPoolTx(): number {
  return (JSON.parse(readFileSync(join(STATE, 'store', 'pool.json'), 'utf8')) as { transactionId: number }).transactionId;
}

export function poolTx(): number {
  const line = sh('dmsetup', ['status', POOL]).trim().split(/\s+/);
  return Number(line[3]);
}

/**
 * Asserts the stored transaction id catches up with the pool's: the driver stamps the pool after
 * replying, so right after an RPC (or a start that rolled something back) the stamp may still be
 * on its way. It must land within 15 s.
 */
export function assertTxSettled(context = 'tx'): void {
  for (const t0 = Date.now(); poolTx() !== storedPoolTx();) {
    if (Date.now() - t0 > 15_000) assert.equal(poolTx(), storedPoolTx(), `${context}: pool transaction id == stored one`);
    execFileSync('sleep', ['0.1']);
  }
}

/** Thin device ids that exist in the pool's metadata, read from a metadata snapshot with thin_dump. */
export function poolThinIds(pool = POOL, stateDir = STATE): number[] {
  const path = sh('losetup', ['-j', join(stateDir, 'pool', 'metadata.img'), '-n', '-O', 'NAME']).trim().split('\n')[0]!;
  // The driver's own reconcile may hold the pool's one metadata snapshot for a moment.
  for (let attempt = 1; ; attempt++) {
    try {
      sh('dmsetup', ['message', pool, '0', 'reserve_metadata_snap']);
      break;
    } catch (err) {
      if (attempt >= 20) throw err;
      execFileSync('sleep', ['0.25']);
    }
  }
  try {
    const xml = sh('thin_dump', ['--metadata-snap', path]);
    return [...xml.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1]));
  } finally {
    sh('dmsetup', ['message', pool, '0', 'release_metadata_snap']);
  }
}

/**
 * The thin dm devices on this suite's pool (other suites in the same guest have their own pools
 * and may leave theirs behind), with their suspended flag.
 */
export function liveThins(): Array<{ name: string; suspended: boolean }> {
  const pool = sh('dmsetup', ['info', '-c', '--noheadings', '--separator', ':', '-o', 'major,minor', POOL]).trim();
  const tables = sh('dmsetup', ['table', '--target', 'thin']).trim();
  if (!tables || tables.startsWith('No devices')) return [];
  const ours = new Set(tables.split('\n').map((l) => /^(\S+): \d+ \d+ thin (\S+) \d+/.exec(l)).filter((m) => m && m[2] === pool).map((m) => m![1]!));
  const out = sh('dmsetup', ['info', '-c', '--noheadings', '--separator', '|', '-o', 'name,attr']).trim();
  return out.split('\n').map((l) => l.split('|')).filter(([n]) => ours.has(n!)).map(([name, attr]) => ({ name: name!, suspended: attr![2] === 's' }));
}

/** Repairs the last start's reconcile reported, from its 'pool reconciled' log line. */
export function repairsAtStart(log: string): number {
  const line = readFileSync(log, 'utf8').split('\n').find((l) => l.includes('"pool reconciled"'));
  return line ? Number((JSON.parse(line) as { repaired: number }).repaired) : 0;
}
