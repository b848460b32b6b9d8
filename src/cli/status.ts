import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseMultiDevice, parseThinPoolStatus, parseThinPoolTable, parseThinStatus } from '../devmapper/parse.ts';
import type { ThinPoolStatus } from '../devmapper/types.ts';
import { deviceProblem, poolProblem } from '../state/records.ts';
import { byId, type DeviceRecord, type PoolRecord } from '../state/types.ts';
import { withTimeout, background } from '../system/context.ts';
import { run } from '../system/exec.ts';
import type { RunResult } from '../system/exec.ts';
import { formatBytes } from '../kube/quantity.ts';
import { UsageError } from './flags.ts';
import { type FlagDef, flagLines, Options } from './options.ts';
import { backingShortfall, readBacking, realBackingFs, type BackingFs, type BackingReading } from '../pool/backing.ts';
import { assessPool } from '../pool/health.ts';

/** Runs one system command; injected so tests need no dmsetup. */
export type Runner = (command: string, args: readonly string[]) => Promise<RunResult>;

/** The misc minor of device-mapper in /proc/misc ("236 device-mapper"); undefined: not in this kernel. */
export function dmMiscMinor(procMisc: string): number | undefined {
  const m = /^\s*(\d+)\s+device-mapper\s*$/m.exec(procMisc);
  return m ? Number(m[1]) : undefined;
}

/**
 * A runner that runs no dmsetup on a kernel without device-mapper: libdevmapper would make
 * /dev/mapper/control on its first call, and a read-only command must leave the host as it was.
 */
export function withoutDmsetupUnlessDm(runner: Runner, procMisc: string | undefined): Runner {
  if (procMisc === undefined || dmMiscMinor(procMisc) !== undefined) return runner;
  return async (command, args) => {
    if (command === 'dmsetup') throw new Error('device-mapper is not in this kernel (/proc/misc has no device-mapper)');
    return runner(command, args);
  };
}

export const systemRunner: Runner = (command, args) => run(withTimeout(background, 15_000), command, args, { maxMs: 15_000 });

const STATUS_FLAGS: readonly FlagDef[] = [
  { name: 'state-dir', arg: 'DIR', help: ['the standalone store is DIR/store'], env: 'DMTHIN_STATE_DIR', default: '/var/lib/dmthin-csi' },
  { name: 'pool-name', arg: 'NAME', help: ['dm name of the thin pool'], defaultText: 'the name in the records, else dmthin-pool' },
  { name: 'source', arg: 'file|kube', help: ['file: the store, read directly (works while the driver holds its lock);', 'kube: the ThinVolume/ThinSnapshot resources of node --node'], defaultText: 'kube in a pod with NODE_NAME set, else file' },
  { name: 'node', arg: 'NAME', help: ['the node whose resources --source kube reads'], env: 'NODE_NAME' },
];

export const STATUS_USAGE = `Usage: dmthin-csi status [flags]
  Prints the thin pool (dmsetup status) and this node's volumes and snapshots, read-only.
${flagLines(STATUS_FLAGS)}`;

export interface PoolView {
  name: string;
  status?: ThinPoolStatus;
  blockBytes?: number;
  /** A file pool's data file and its filesystem. */
  backing?: BackingReading;
  /** Why the pool could not be read. */
  error?: string;
}

export interface StatusReport {
  stateDir: string;
  pool: PoolView;
  devices: DeviceRecord[];
  /** Mapped (allocated) bytes per dm name of active thin devices. */
  usedBytes: Map<string, number>;
  /** Records that could not be read. */
  problems: string[];
  /** Where the records came from when not the file store. */
  source?: string;
}

export { formatBytes };

function readProcMisc(): string | undefined {
  try {
    return readFileSync('/proc/misc', 'utf8');
  } catch {
    return undefined;
  }
}

export const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

/** Device and pool records under STATE/store, read without the lock and without changing anything. */
export async function readStore(stateDir: string): Promise<StoreView> {
  const dir = path.join(stateDir, 'store');
  const problems: string[] = [];
  const readJson = async (file: string, problemOf: (x: unknown) => string | undefined): Promise<unknown> => {
    try {
      const value: unknown = JSON.parse(await fsp.readFile(file, 'utf8'));
      const problem = problemOf(value);
      if (problem === undefined) return value;
      problems.push(`${path.relative(dir, file)}: ${problem}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`${path.relative(dir, file)}: ${errText(err)}`);
    }
    return undefined;
  };
  const pool = await readJson(path.join(dir, 'pool.json'), poolProblem) as PoolRecord | undefined;
  let names: string[] = [];
  try {
    names = (await fsp.readdir(path.join(dir, 'devices'))).filter((n) => n.endsWith('.json')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`devices: ${errText(err)}`);
  }
  const devices: DeviceRecord[] = [];
  for (const n of names) {
    const rec = await readJson(path.join(dir, 'devices', n), deviceProblem) as DeviceRecord | undefined;
    if (rec) devices.push(rec);
  }
  devices.sort(byId);
  return { ...(pool ? { pool } : {}), devices, problems };
}

export async function readPool(runner: Runner, name: string, fs?: BackingFs): Promise<PoolView> {
  try {
    const status = parseThinPoolStatus((await runner('dmsetup', ['status', name])).stdout);
    let blockBytes: number | undefined;
    let backing: BackingReading | undefined;
    try {
      const table = parseThinPoolTable((await runner('dmsetup', ['table', name])).stdout);
      blockBytes = table.dataBlockSectors * 512;
      if (fs) backing = await readBacking(fs, table.dataDev, table.metadataDev).catch(() => undefined);
    } catch {
      blockBytes = undefined;
    }
    return { name, status, ...(blockBytes ? { blockBytes } : {}), ...(backing ? { backing } : {}) };
  } catch (err) {
    return { name, error: errText(err) };
  }
}

async function readUsage(runner: Runner): Promise<Map<string, number>> {
  const used = new Map<string, number>();
  try {
    for (const [name, line] of parseMultiDevice((await runner('dmsetup', ['status', '--target', 'thin'])).stdout)) {
      try {
        const st = parseThinStatus(line);
        if (!st.fail) used.set(name, st.mappedSectors * 512);
      } catch {
        // a failed thin device: no usage to show
      }
    }
  } catch {
    // no dmsetup or no thin devices: the table shows '-'
  }
  return used;
}

export interface StoreView { pool?: PoolRecord; devices: DeviceRecord[]; problems: string[] }

export async function collectStatus(runner: Runner, stateDir: string, poolName?: string, source?: () => Promise<StoreView>, fs?: BackingFs): Promise<StatusReport> {
  const store = source ? await source() : await readStore(stateDir);
  const pool = await readPool(runner, poolName ?? store.pool?.name ?? 'dmthin-pool', fs);
  return { stateDir, pool, devices: store.devices, usedBytes: await readUsage(runner), problems: store.problems };
}

const pct = (used: number, total: number): string => (total > 0 ? `${((100 * used) / total).toFixed(1)}%` : '-');

export function formatPool(p: PoolView): string[] {
  if (!p.status) return [`Pool ${p.name}: unavailable (${p.error ?? 'unknown'})`];
  const s = p.status;
  if (s.mode === 'fail') return [`Pool ${p.name}: FAILED (the kernel allows no I/O; run \`dmthin-csi doctor --pool-name ${p.name}\`)`];
  const lines = [`Pool ${p.name}: mode ${s.mode}${s.needsCheck ? ', NEEDS CHECK' : ''}, transaction ${s.transactionId}`];
  if (p.blockBytes) {
    const b = p.blockBytes;
    lines.push(`  data      ${formatBytes(s.usedDataBlocks * b)} / ${formatBytes(s.totalDataBlocks * b)} (${pct(s.usedDataBlocks, s.totalDataBlocks)}), block ${formatBytes(b)}`);
  } else {
    lines.push(`  data      ${s.usedDataBlocks} / ${s.totalDataBlocks} blocks (${pct(s.usedDataBlocks, s.totalDataBlocks)})`);
  }
  if (p.backing && p.blockBytes) {
    const b = p.backing;
    const free = assessPool(s, p.blockBytes / 512, undefined, b).dataFreeBytes; // the figure capacity uses
    lines.push(`  room      ${formatBytes(free)} more data; file ${b.dataFile}: ${formatBytes(b.fileAllocatedBytes)} of ${formatBytes(b.fileBytes)} allocated, filesystem ${formatBytes(b.fsAvailableBytes)} available`);
    const short = backingShortfall(b);
    if (short) lines.push(`  WARNING: ${short}`);
  }
  lines.push(`  metadata  ${formatBytes(s.usedMetadataBlocks * 4096)} / ${formatBytes(s.totalMetadataBlocks * 4096)} (${pct(s.usedMetadataBlocks, s.totalMetadataBlocks)})`);
  if (s.mode === 'out_of_data_space') lines.push('  WARNING: out of data space: writes are queued or failing; grow the pool or delete volumes');
  if (s.mode === 'ro') lines.push('  WARNING: read-only: metadata space is exhausted or an error occurred; see `dmthin-csi doctor`');
  return lines;
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

export function formatStatus(r: StatusReport): string {
  const lines = [...formatPool(r.pool), ''];
  if (r.devices.length === 0) {
    lines.push(`No volumes or snapshots in ${r.source ?? path.join(r.stateDir, 'store')}.`);
  } else {
    const rows = [['ID', 'KIND', 'SIZE', 'USED', 'STATE', 'DEVICE', 'ORIGIN', 'ERROR']];
    for (const d of r.devices) {
      const used = r.usedBytes.get(d.dmName);
      rows.push([
        d.id, d.kind, formatBytes(d.sizeBytes), used === undefined ? '-' : formatBytes(used), d.state,
        String(d.deviceId), d.origin ?? '-', d.error ? d.error.replace(/\s+/g, ' ') : '',
      ]);
    }
    lines.push(...formatTable(rows));
    const faulty = r.devices.filter((d) => d.state === 'Faulty').length;
    if (faulty > 0) lines.push('', `${faulty} device(s) Faulty: see README "Recovering a Faulty volume".`);
  }
  for (const p of r.problems) lines.push(`unreadable record: ${p}`);
  return `${lines.join('\n')}\n`;
}

export async function runStatus(argv: string[], runner: Runner = systemRunner, env: NodeJS.ProcessEnv = process.env, procMisc = readProcMisc()): Promise<number> {
  const o = Options.parse(argv, STATUS_FLAGS, STATUS_USAGE, env);
  const run = withoutDmsetupUnlessDm(runner, procMisc);
  if (o.help) {
    process.stdout.write(`${STATUS_USAGE}\n`);
    return 0;
  }
  const inPod = Boolean(env.KUBERNETES_SERVICE_HOST && env.NODE_NAME);
  const source = o.string('source') ?? (inPod ? 'kube' : 'file');
  if (source !== 'file' && source !== 'kube') throw new UsageError(`--source must be file or kube\n${STATUS_USAGE}`);
  const node = o.string('node');
  if (source === 'kube' && !node) throw new UsageError(`--source kube needs --node or NODE_NAME\n${STATUS_USAGE}`);
  const stateDir = o.string('state-dir')!;
  const poolName = o.string('pool-name');
  const report = source === 'kube'
    ? { ...await collectStatus(run, stateDir, poolName, async () => (await import('./status-kube.ts')).readKube(node!, poolName), realBackingFs), source: `the custom resources of node ${node}` }
    : await collectStatus(run, stateDir, poolName, undefined, realBackingFs);
  process.stdout.write(formatStatus(report));
  return report.pool.status && report.pool.status.mode !== 'fail' ? 0 : 1;
}
