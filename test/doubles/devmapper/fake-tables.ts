import { CommandError, errnoFromText } from '../../../src/system/exec.ts';
import { classifyDmsetupError } from '../../../src/devmapper/errors.ts';
import type { FakePoolMetadata } from './fake-pool.ts';
import { KernelError } from './fake-pool.ts';
import type { DmError } from '../../../src/devmapper/types.ts';

/** The fake's major number for dm devices; minors are handed out lowest-free, like the kernel's idr. */
export const FAKE_DM_MAJOR = 254;

/** One loaded table: a single segment, with what its target holds open. */
export interface FakeTable {
  length: number;
  target: string;
  /** Parameters as the kernel would print them back (`dmsetup table`). */
  params: string;
  thin?: { pool: FakeDevice; id: number; origin: string | undefined };
  pool?: FakePoolTable;
}

export interface FakePoolTable {
  meta: FakePoolMetadata;
  metadataDev: string;
  dataDev: string;
  blockSectors: number;
  lowWater: number;
  features: string[];
}

export interface FakeDevice {
  name: string;
  minor: number;
  uuid: string;
  readOnly: boolean;
  live: FakeTable | undefined;
  inactive: FakeTable | undefined;
  suspended: boolean;
  /** Holders from outside dm: mounts and open files (adjustOpen). */
  open: number;
  /** The kernel's event counter (see fake-events.ts). */
  events: number;
  deferredRemove: boolean;
}

const STRERROR: Readonly<Record<string, string>> = {
  EEXIST: 'File exists', EBUSY: 'Device or resource busy', ENODATA: 'No data available',
  EINVAL: 'Invalid argument', ENOSPC: 'No space left on device', ENXIO: 'No such device or address',
  ENODEV: 'No such device', ENOENT: 'No such file or directory', EOPNOTSUPP: 'Operation not supported',
  EIO: 'Input/output error', EROFS: 'Read-only file system',
};

/**
 * The DmError DmsetupDeviceMapper would raise had dmsetup printed `stderr`: the fake goes
 * through the real classifier so both implementations fail with the same kinds.
 */
export function dmsetupFailure(args: readonly string[], stderr: string): DmError {
  const full = `${stderr}\nCommand failed.`;
  return classifyDmsetupError(new CommandError({
    command: 'dmsetup', args, exitCode: 1, stderr: full, stdout: '', errno: errnoFromText(stderr),
    timedOut: false, message: `dmsetup ${args.join(' ')}: exit code 1: ${stderr}`,
  }), `dmsetup ${args.join(' ')}`);
}

/** libdm's wording for a failed ioctl, e.g. "device-mapper: message ioctl on pool  failed: File exists". */
export function ioctlFailure(args: readonly string[], ioctl: string, name: string, errno: string, devno?: string): DmError {
  // libdm prints "NAME UUID(MAJ:MIN) failed" with an empty uuid, hence the double space without a devno.
  const where = devno === undefined ? `${name} ` : `${name} (${devno})`;
  return dmsetupFailure(args, `device-mapper: ${ioctl} ioctl on ${where} failed: ${STRERROR[errno] ?? errno}`);
}

export interface TableResolver {
  /** A dm device named by /dev/mapper/NAME or MAJOR:MINOR. */
  deviceByRef(ref: string): FakeDevice | undefined;
  /** Pool metadata for a metadata device, created on first use as a fresh pool would format it. */
  metadataFor(metadataDev: string, blockSectors: number, dataBlocks: number): FakePoolMetadata;
  /** The active pool device already using this metadata, if any. */
  poolUsing(meta: FakePoolMetadata): FakeDevice | undefined;
}

const MIN_BLOCK = 128;
const MAX_BLOCK = 2_097_152;
const POOL_FEATURES = ['skip_block_zeroing', 'ignore_discard', 'no_discard_passdown', 'read_only', 'error_if_no_space'];

/** Parses and checks a table the way the target constructors do; throws KernelError with their errno. */
export function loadTable(text: string, self: string, r: TableResolver): FakeTable {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1) throw new KernelError('EINVAL', `the fake supports single-segment tables, got ${lines.length}`);
  const [start, len, target, ...params] = (lines[0] as string).split(/\s+/);
  if (start !== '0' || len === undefined || !/^\d+$/.test(len) || Number(len) === 0 || target === undefined) {
    throw new KernelError('EINVAL', `bad table line ${JSON.stringify(lines[0])}`);
  }
  const length = Number(len);
  if (target === 'thin') return thinTable(length, params, r);
  if (target === 'thin-pool') return poolTable(length, params, self, r);
  if (['linear', 'error', 'zero', 'striped'].includes(target)) return { length, target, params: params.join(' ') };
  throw new KernelError('EINVAL', `unknown target type ${target}`);
}

function thinTable(length: number, params: string[], r: TableResolver): FakeTable {
  const [poolRef, idText, origin, ...extra] = params;
  if (poolRef === undefined || idText === undefined || extra.length > 0 || !/^\d+$/.test(idText)) {
    throw new KernelError('EINVAL', 'thin: expected <pool dev> <dev id> [<external origin dev>]');
  }
  const pool = r.deviceByRef(poolRef);
  if (!pool) throw new KernelError('ENODEV', `thin: no pool device ${poolRef}`);
  const pt = pool.live?.pool;
  if (!pt) throw new KernelError('EINVAL', `thin: ${poolRef} is not an active thin-pool`);
  if (pt.meta.effectiveMode(pt.features.includes('read_only')) === 'fail') {
    throw new KernelError('EINVAL', 'thin: pool is in fail mode');
  }
  const id = Number(idText);
  if (!pt.meta.hasThin(id)) throw new KernelError('ENODATA', `thin: no thin device ${id} in the pool`);
  if (origin !== undefined && !r.deviceByRef(origin) && !origin.startsWith('/dev/')) {
    throw new KernelError('ENODEV', `thin: no origin device ${origin}`);
  }
  const poolDev = `${FAKE_DM_MAJOR}:${pool.minor}`;
  return {
    length, target: 'thin', params: origin === undefined ? `${poolDev} ${id}` : `${poolDev} ${id} ${origin}`,
    thin: { pool, id, origin },
  };
}

function poolTable(length: number, params: string[], self: string, r: TableResolver): FakeTable {
  const [metadataDev, dataDev, bsText, lwText, countText, ...features] = params;
  if (metadataDev === undefined || dataDev === undefined || bsText === undefined || lwText === undefined) {
    throw new KernelError('EINVAL', 'thin-pool: expected <metadata dev> <data dev> <block size> <low water mark> [<#features> <feature>*]');
  }
  const blockSectors = Number(bsText);
  if (!/^\d+$/.test(bsText) || blockSectors < MIN_BLOCK || blockSectors > MAX_BLOCK || blockSectors % MIN_BLOCK !== 0) {
    throw new KernelError('EINVAL', `thin-pool: invalid block size ${bsText}`);
  }
  if (!/^\d+$/.test(lwText)) throw new KernelError('EINVAL', `thin-pool: invalid low water mark ${lwText}`);
  const count = countText === undefined ? 0 : Number(countText);
  if ((countText !== undefined && !/^\d+$/.test(countText)) || count !== features.length
      || features.some((f) => !POOL_FEATURES.includes(f))) {
    throw new KernelError('EINVAL', `thin-pool: bad feature list ${[countText, ...features].join(' ')}`);
  }
  const dataBlocks = Math.floor(length / blockSectors);
  const meta = r.metadataFor(metadataDev, blockSectors, dataBlocks);
  if (meta.dataBlockSectors !== blockSectors) throw new KernelError('EINVAL', 'thin-pool: block size differs from the metadata');
  const user = r.poolUsing(meta);
  if (user && user.name !== self) throw new KernelError('EBUSY', `thin-pool: metadata device in use by ${user.name}`);
  // The kernel prints features in its own fixed order.
  const sorted = POOL_FEATURES.filter((f) => features.includes(f));
  return {
    length, target: 'thin-pool',
    params: `${metadataDev} ${dataDev} ${blockSectors} ${lwText} ${sorted.length} ${sorted.map((f) => `${f} `).join('')}`,
    pool: { meta, metadataDev, dataDev, blockSectors, lowWater: Number(lwText), features: sorted },
  };
}

/** The status line dm-thin prints for a live table (pool, thin, or a bare target). */
export function renderStatus(t: FakeTable): string {
  const head = `0 ${t.length} ${t.target}`;
  if (t.pool) return `${head} ${t.pool.meta.statusParams(t.pool.features.includes('read_only'), t.pool.features)}`;
  if (!t.thin) return `${head} `;
  const pt = t.thin.pool.live?.pool;
  if (!pt || pt.meta.effectiveMode(pt.features.includes('read_only')) === 'fail') return `${head} Fail`;
  const highest = pt.meta.highestMappedBlock(t.thin.id);
  const bs = pt.blockSectors;
  return `${head} ${pt.meta.mappedBlocks(t.thin.id) * bs} ${highest === undefined ? '-' : (highest + 1) * bs - 1}`;
}
