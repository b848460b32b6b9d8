import type { ThinPoolStatus } from '../devmapper/types.ts';
import { SECTOR } from '../devmapper/types.ts';
import { failedPrecondition, resourceExhausted } from '../errors.ts';
import { backedFreeBytes, type BackingReading } from './backing.ts';

/** Metadata blocks are always 4 KiB (kernel-thin-provisioning.rst). */
export const METADATA_BLOCK_BYTES = 4096;

/** Every condition a pool can be in: the metrics label values and the ThinPool CRD's health enum. */
export const POOL_CONDITIONS = ['ok', 'low_space', 'out_of_space', 'read_only', 'needs_check', 'failed'] as const;
export type PoolCondition = (typeof POOL_CONDITIONS)[number];

export interface PoolThresholds {
  /** Data usage (percent) at and above which new volumes are refused. */
  lowDataPercent: number;
  /** Metadata usage (percent) at and above which new volumes and snapshots are refused. */
  lowMetadataPercent: number;
}

export const DEFAULT_THRESHOLDS: PoolThresholds = { lowDataPercent: 95, lowMetadataPercent: 90 };

export interface PoolHealth {
  condition: PoolCondition;
  /** Human-readable reasons, empty when ok. */
  reasons: string[];
  /** New devices may be created. */
  writable: boolean;
  dataTotalBytes: number;
  dataUsedBytes: number;
  /**
   * Data bytes the pool can still take: its free space, and for a file-backed pool no more than
   * its data file can still get from the filesystem under it (backedFreeBytes). The one figure
   * capacity, admission, the ThinPool status, the metrics, `status` and `doctor` use.
   */
  dataFreeBytes: number;
  /** The data file and its filesystem, for a file-backed pool. */
  backing?: BackingReading;
  metadataTotalBytes: number;
  metadataUsedBytes: number;
  transactionId: number;
}

const pct = (used: number, total: number) => (total === 0 ? 100 : (used / total) * 100);

/**
 * Derives what the driver may do with a pool from its status line and, for a file-backed pool,
 * a reading of its backing files; pure, so it is unit-tested.
 */
export function assessPool(status: ThinPoolStatus, dataBlockSectors: number, t: PoolThresholds = DEFAULT_THRESHOLDS, backing?: BackingReading): PoolHealth {
  const blockBytes = dataBlockSectors * SECTOR;
  const dataTotalBytes = status.totalDataBlocks * blockBytes;
  const dataUsedBytes = status.usedDataBlocks * blockBytes;
  const base = {
    dataTotalBytes, dataUsedBytes,
    // Whole blocks: the pool allocates no less, so room for part of one is no room.
    dataFreeBytes: Math.floor(backedFreeBytes(Math.max(0, dataTotalBytes - dataUsedBytes), dataUsedBytes, backing) / blockBytes) * blockBytes,
    ...(backing ? { backing } : {}),
    metadataTotalBytes: status.totalMetadataBlocks * METADATA_BLOCK_BYTES,
    metadataUsedBytes: status.usedMetadataBlocks * METADATA_BLOCK_BYTES,
    transactionId: status.transactionId,
  };
  const dataPct = pct(status.usedDataBlocks, status.totalDataBlocks);
  const metaPct = pct(status.usedMetadataBlocks, status.totalMetadataBlocks);
  const usage = `data ${dataPct.toFixed(1)}% used, metadata ${metaPct.toFixed(1)}% used`;
  if (status.mode === 'fail') {
    return { ...base, condition: 'failed', writable: false, reasons: ['the kernel failed the pool: no I/O is possible until its metadata is repaired (thin_check/thin_repair)'] };
  }
  if (status.needsCheck) {
    return { ...base, condition: 'needs_check', writable: false, reasons: ['pool metadata needs checking (needs_check set): deactivate the pool and run thin_check/thin_repair'] };
  }
  if (status.mode === 'ro') {
    return { ...base, condition: 'read_only', writable: false, reasons: [`pool is in read-only metadata mode (${usage}); existing data is readable, nothing new can be allocated`] };
  }
  if (status.mode === 'out_of_data_space') {
    return { ...base, condition: 'out_of_space', writable: false, reasons: [`pool is out of data space (${usage}); extend the data device or delete volumes and snapshots`] };
  }
  const reasons = backing ? backingReasons(base, backing, t) : [];
  if (!backing && dataPct >= t.lowDataPercent) reasons.push(`pool data is ${dataPct.toFixed(1)}% used (threshold ${t.lowDataPercent}%)`);
  if (metaPct >= t.lowMetadataPercent) reasons.push(`pool metadata is ${metaPct.toFixed(1)}% used (threshold ${t.lowMetadataPercent}%)`);
  if (reasons.length > 0) return { ...base, condition: 'low_space', writable: false, reasons };
  return { ...base, condition: 'ok', writable: true, reasons: [] };
}

/**
 * A file-backed pool's data threshold is taken against what it can hold now (used + what it can
 * still take), so a data file that cannot grow any further is low on space before the kernel
 * finds out (a loop write failing under the pool). A metadata file with holes may meet ENOSPC
 * on a metadata write, which costs the whole pool: low on space too.
 */
function backingReasons(h: Pick<PoolHealth, 'dataUsedBytes' | 'dataFreeBytes' | 'dataTotalBytes'>, b: BackingReading, t: PoolThresholds): string[] {
  const out: string[] = [];
  const dataPct = pct(h.dataUsedBytes, h.dataUsedBytes + h.dataFreeBytes);
  if (dataPct >= t.lowDataPercent) {
    const limited = h.dataFreeBytes < h.dataTotalBytes - h.dataUsedBytes;
    out.push(limited
      ? `pool data is ${dataPct.toFixed(1)}% used of what its data file can hold (threshold ${t.lowDataPercent}%): the filesystem under ${b.dataFile} has ${b.fsAvailableBytes} bytes available`
      : `pool data is ${dataPct.toFixed(1)}% used (threshold ${t.lowDataPercent}%)`);
  }
  if (b.metadataUnallocatedBytes > 0) {
    out.push(`metadata file ${b.metadataFile ?? ''} has ${b.metadataUnallocatedBytes} bytes unallocated, so a metadata write may fail for want of space: free space on its filesystem and restart the driver (it allocates the file)`);
  }
  return out;
}

/** Bytes the pool can still hand out: what it can still take times the overprovision ratio. */
export function allocatableBytes(h: PoolHealth, overprovisionRatio: number): number {
  if (!h.writable) return 0;
  return Math.floor(h.dataFreeBytes * overprovisionRatio);
}

/**
 * Why `what` (a flush suspend of a live device, or writing new blocks: mkfs, a filesystem grow)
 * may not be done now, or undefined: on a pool out of data space the writes (a snapshot's or a
 * resize's freeze of the filesystem writing its journal) wait in the kernel until
 * no_space_timeout, and a read-only, needs_check or failed pool takes no new mapping either. RESOURCE_EXHAUSTED where space is the want (CSI's "not enough space"; freeing
 * space cures it); FAILED_PRECONDITION where the pool must be repaired first, so a retry alone
 * cannot succeed.
 */
export function freezeRefusal(pool: string, h: PoolHealth, what: string): Error | undefined {
  const why = h.reasons.join('; ');
  if (h.condition === 'failed' || h.condition === 'needs_check' || h.condition === 'read_only') {
    return failedPrecondition(`thin pool ${pool} refuses ${what} until it is repaired: ${why}`);
  }
  if (h.condition === 'out_of_space' || (h.dataFreeBytes === 0 && !h.backing)) {
    return resourceExhausted(`thin pool ${pool} is out of data space, so ${what} would freeze the volume until the kernel's no_space_timeout: ${why}`);
  }
  if (h.dataFreeBytes === 0) {
    return resourceExhausted(`thin pool ${pool} refuses ${what}: the filesystem under its data file ${h.backing?.dataFile ?? ''} is full, so writes needing new blocks fail: ${why}`);
  }
  return undefined;
}

/**
 * Whether the pool's volumes cannot be written where they need new blocks: a broken pool, one
 * out of data space, or one with no room left (a file pool whose filesystem is full, where such
 * writes fail with I/O errors). Volumes are then reported abnormal.
 */
export function writesFail(condition: PoolCondition, dataFreeBytes: number | undefined): boolean {
  return (condition !== 'ok' && condition !== 'low_space') || dataFreeBytes === 0;
}

/** Metadata space at its threshold: running it out makes the pool read-only, so snapshots stop there. */
export function metadataLow(h: PoolHealth, t: PoolThresholds): boolean {
  return h.metadataTotalBytes === 0 || (h.metadataUsedBytes / h.metadataTotalBytes) * 100 >= t.lowMetadataPercent;
}

/** Why the pool's metadata cannot take a new device, or undefined. */
export function metadataRefusal(pool: string, h: PoolHealth, t: PoolThresholds): Error | undefined {
  if (h.condition === 'failed' || h.condition === 'needs_check' || h.condition === 'read_only' || metadataLow(h, t)) {
    return resourceExhausted(`thin pool ${pool} cannot change its metadata: ${h.reasons.join('; ')}`);
  }
  return undefined;
}
