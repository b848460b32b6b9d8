import type { ThinPoolStatus } from '../devmapper/types.ts';
import { SECTOR } from '../devmapper/types.ts';

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
  metadataTotalBytes: number;
  metadataUsedBytes: number;
  transactionId: number;
}

const pct = (used: number, total: number) => (total === 0 ? 100 : (used / total) * 100);

/** Derives what the driver may do with a pool from its status line; pure, so it is unit-tested. */
export function assessPool(status: ThinPoolStatus, dataBlockSectors: number, t: PoolThresholds = DEFAULT_THRESHOLDS): PoolHealth {
  const blockBytes = dataBlockSectors * SECTOR;
  const base = {
    dataTotalBytes: status.totalDataBlocks * blockBytes,
    dataUsedBytes: status.usedDataBlocks * blockBytes,
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
  const reasons: string[] = [];
  if (dataPct >= t.lowDataPercent) reasons.push(`pool data is ${dataPct.toFixed(1)}% used (threshold ${t.lowDataPercent}%)`);
  if (metaPct >= t.lowMetadataPercent) reasons.push(`pool metadata is ${metaPct.toFixed(1)}% used (threshold ${t.lowMetadataPercent}%)`);
  if (reasons.length > 0) return { ...base, condition: 'low_space', writable: false, reasons };
  return { ...base, condition: 'ok', writable: true, reasons: [] };
}

/** Bytes the pool can still hand out, physical free space times the overprovision ratio. */
export function allocatableBytes(h: PoolHealth, overprovisionRatio: number): number {
  if (!h.writable) return 0;
  const free = Math.max(0, h.dataTotalBytes - h.dataUsedBytes);
  return Math.floor(free * overprovisionRatio);
}
