import type { OpContext } from '../system/context.ts';

/** 512-byte sectors, the unit of every dm table and status line. */
export const SECTOR = 512;

/** Why a dm operation failed, decided from errno first and message text second. */
export type DmErrorKind = 'not_found' | 'busy' | 'exists' | 'no_data' | 'invalid' | 'no_space' | 'unsupported' | 'timeout' | 'unknown';

export class DmError extends Error {
  readonly kind: DmErrorKind;
  readonly errno: string | undefined;
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(kind: DmErrorKind, message: string, detail: { errno?: string; exitCode?: number; stderr?: string; cause?: unknown } = {}) {
    super(message, { cause: detail.cause });
    this.name = 'DmError';
    this.kind = kind;
    this.errno = detail.errno;
    this.exitCode = detail.exitCode;
    this.stderr = detail.stderr ?? '';
  }
}

export function isDmError(err: unknown, kind?: DmErrorKind): err is DmError {
  return err instanceof DmError && (kind === undefined || err.kind === kind);
}

/** `dmsetup info` of one device. */
export interface DmDeviceInfo {
  name: string;
  major: number;
  minor: number;
  /** A table is loaded and live (not only an inactive table). */
  live: boolean;
  suspended: boolean;
  readOnly: boolean;
  /** Open count: how many holders (mounts, open files) the device has. */
  openCount: number;
  uuid: string;
  /** A table is loaded but not yet live (reload without resume). */
  inactiveTable?: boolean;
  /** Number of targets in the live table. */
  segments?: number;
  /** Event counter (table swaps, pool low-water and mode changes bump it). */
  events?: number;
}

/** Parsed `thin-pool` status line (see kernel-thin-provisioning.rst, "Status"). */
export interface ThinPoolStatus {
  /** Length of the pool table, sectors. */
  lengthSectors: number;
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  /** 'Fail' is the kernel's word for a pool that allows no I/O at all. */
  mode: 'rw' | 'ro' | 'out_of_data_space' | 'fail';
  discardPassdown: boolean;
  errorIfNoSpace: boolean;
  needsCheck: boolean;
  metadataLowWatermark: number | undefined;
  /** Root block of a reserved metadata snapshot; absent when none is held. */
  heldMetadataRoot?: number;
}

/** Parsed `thin` status line. */
export interface ThinStatus {
  lengthSectors: number;
  /** Sectors mapped (allocated) by this device; 0 when it has none. */
  mappedSectors: number;
  /** Highest mapped sector, or undefined when nothing is mapped ('-'). */
  highestMappedSector: number | undefined;
  fail: boolean;
}

/** Parsed `thin-pool` table line. */
export interface ThinPoolTable {
  lengthSectors: number;
  metadataDev: string;
  dataDev: string;
  dataBlockSectors: number;
  lowWaterMark: number;
  features: string[];
}

/** Parsed `thin` table line. */
export interface ThinTable {
  lengthSectors: number;
  poolDev: string;
  deviceId: number;
  externalOrigin: string | undefined;
}

export interface RemoveOptions {
  /** Retry while the device is busy (dmsetup --retry). */
  retry?: boolean;
  /** Replace the table with one that errors I/O before removing. */
  force?: boolean;
  deferred?: boolean;
}

/**
 * The device-mapper operations the driver needs, nothing more. The real implementation
 * runs dmsetup; the fake models a thin pool in memory. Every failure is a DmError.
 * Names are bare dm names (no /dev/mapper/ prefix).
 */
export interface DeviceMapper {
  /** Driver + library versions; fails with kind 'unsupported' when the kernel has no device-mapper. */
  version(ctx: OpContext): Promise<string>;
  /** Kernel targets available (thin-pool, thin, ...), from `dmsetup targets`. */
  targets(ctx: OpContext): Promise<string[]>;
  create(ctx: OpContext, name: string, table: string, opts?: { readOnly?: boolean; uuid?: string }): Promise<void>;
  /** Loads a new inactive table; the next resume swaps it in (suspending the device first if it is not). */
  reload(ctx: OpContext, name: string, table: string): Promise<void>;
  remove(ctx: OpContext, name: string, opts?: RemoveOptions): Promise<void>;
  suspend(ctx: OpContext, name: string, opts?: { noFlush?: boolean }): Promise<void>;
  resume(ctx: OpContext, name: string): Promise<void>;
  /** `dmsetup message POOL 0 MSG`. kind 'exists' = EEXIST, 'no_data' = ENODATA, 'invalid' = EINVAL. */
  message(ctx: OpContext, pool: string, msg: string): Promise<void>;
  /** undefined when no such device. */
  info(ctx: OpContext, name: string): Promise<DmDeviceInfo | undefined>;
  /** Whether NAME has a live table, as `info` tells; may answer from sysfs, with no command run. */
  isLive(ctx: OpContext, name: string): Promise<boolean>;
  /** Length of NAME's live thin table in sectors, undefined when it has none; may answer from sysfs. */
  liveThinSectors(ctx: OpContext, name: string): Promise<number | undefined>;
  /** Every dm device on the host, one `dmsetup info -c` call. */
  infoAll(ctx: OpContext): Promise<DmDeviceInfo[]>;
  /** Status of every live `thin` device, one `dmsetup status --target thin` call. */
  thinStatusAll(ctx: OpContext): Promise<Map<string, ThinStatus>>;
  /** Table of every live `thin` device, one `dmsetup table --target thin` call. */
  thinTableAll(ctx: OpContext): Promise<Map<string, ThinTable>>;
  poolStatus(ctx: OpContext, pool: string): Promise<ThinPoolStatus>;
  thinStatus(ctx: OpContext, name: string): Promise<ThinStatus>;
  poolTable(ctx: OpContext, pool: string): Promise<ThinPoolTable>;
  /** The live table of a thin device; DmError 'not_found' when NAME is absent or has no live table. */
  thinTable(ctx: OpContext, name: string): Promise<ThinTable>;
  /** Path of the device node, /dev/mapper/NAME. */
  devicePath(name: string): string;
  /**
   * DM_DEV_WAIT's meaning: resolves with NAME's event number once it is no longer `eventNr` (a
   * table swap or resume, a pool passing its low-water mark or changing mode), at once when it
   * already differs. DmError 'timeout' when the context's deadline passes or its signal aborts
   * first; nothing of the wait outlives that by more than a second, so a stop is never held.
   */
  waitEvent(ctx: OpContext, name: string, eventNr: number): Promise<number>;
  /** Every thin id in the pool's metadata, inactive devices included (metadataDev: the pool table's, when known). */
  thinIds(ctx: OpContext, pool: string, metadataDev?: string): Promise<ThinIds>;
}

/** The pool's thin ids, or why they cannot be read now (the caller skips what needs them). */
export type ThinIds = { ids: number[] } | { unavailable: string };
