import { truncate } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DeviceMapper, ThinPoolTable } from '../devmapper/types.ts';
import { SECTOR, isDmError } from '../devmapper/types.ts';
import { errorMessage } from '../errors.ts';
import type { LoopDevices, Mounter } from '../mount/types.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type OpContext, withTimeout } from '../system/context.ts';
import { sleep } from '../system/delay.ts';
import { type BackingFs, realBackingFs } from './backing.ts';
import { loopFiles } from './provision.ts';
import { METADATA_BLOCK_BYTES } from './health.ts';

/** dm-thin uses at most this many metadata blocks (DM_SM_METADATA_MAX_BLOCKS): a larger device's excess is ignored. */
const MAX_METADATA_BLOCKS = 255 * ((1 << 14) - 64);

/** The devices the pool's table was built from, and for a file pool the files behind their loops. */
export interface Backing {
  dataDevice: string;
  metadataDevice: string;
  files?: { data: string; metadata: string };
}

export interface GrowthSettings {
  /** Automatic growth of a file pool on its low-water event, up to this many data bytes; undefined: off. */
  maxDataBytes?: number;
  /** With automatic growth: the low-water mark, as a percentage of the pool's data blocks left free. */
  lowWaterPercent?: number;
  /** Each automatic step adds this percentage of the current size (at least one data block). */
  stepPercent?: number;
}

export const DEFAULT_LOW_WATER_PERCENT = 10;
export const DEFAULT_STEP_PERCENT = 25;

export type GrowReason = 'requested' | 'low_water' | 'device_grew';

/** What one check did: the ThinPool's Events and the metrics say it in these words. */
export type GrowOutcome =
  | { kind: 'grown'; reason: GrowReason; fromBytes: number; toBytes: number }
  | { kind: 'refused'; reason: 'ceiling' | 'no_room' | 'not_file'; wantedBytes: number; message: string }
  | { kind: 'failed'; reason: GrowReason; message: string };

export interface GrowDeps {
  dm: DeviceMapper;
  loops: LoopDevices;
  mounter: Pick<Mounter, 'blockSize'>;
  log: Logger;
  metrics: Metrics;
  /** The filesystem under the pool's files, as capacity reads it; default the real one. */
  fs?: Pick<BackingFs, 'availableBytes' | 'usage'>;
}

/**
 * Grows the node's pool online: the file behind a file pool's data device (on request, or on
 * the pool's low-water event up to a ceiling), the loop's capacity, then the pool table (reload
 * with the new length, one suspend and resume of the pool, checked in its status). A crash at
 * any step leaves a device larger than the table, which the next check takes: every check
 * starts by letting the table catch up with its devices.
 */
export class PoolGrower {
  readonly pool: string;
  private readonly deps: GrowDeps;
  private readonly backing: Backing;
  private readonly settings: GrowthSettings;
  private get fs(): Pick<BackingFs, 'availableBytes' | 'usage'> { return this.deps.fs ?? realBackingFs; }
  private requested: number | undefined;
  /** The last refusal said, so a pool at its ceiling does not say so at every event. */
  private lastRefusal: string | undefined;
  private serialise: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn();
  private afterGrowth: (ctx: OpContext) => Promise<unknown> = async () => undefined;
  private loop: { stop: AbortController; done: Promise<void> } | undefined;
  private wake: (() => void) | undefined;
  /** Where each outcome goes besides the log and the metrics (Kubernetes mode: an Event on the ThinPool). */
  onOutcome: ((o: GrowOutcome) => void) | undefined;

  constructor(deps: GrowDeps, pool: string, backing: Backing, settings: GrowthSettings = {}) {
    this.deps = deps;
    this.pool = pool;
    this.backing = backing;
    this.settings = settings;
  }

  get autoGrowth(): boolean { return this.settings.maxDataBytes !== undefined && this.backing.files !== undefined; }

  /**
   * Once the pool is attached: the table is swapped only between its messages (`serialise`),
   * and `refresh` reads the status afresh after a growth, so capacity says the new size at once.
   */
  attached(serialise: <T>(fn: () => Promise<T>) => Promise<T>, refresh: (ctx: OpContext) => Promise<unknown>): void {
    this.serialise = serialise;
    this.afterGrowth = refresh;
  }

  /** An explicit request (a flag, the ThinPool's annotation): the data file grows to `bytes` at the next check, which this starts. */
  request(bytes: number | undefined): void {
    if (bytes === this.requested) return;
    this.requested = bytes;
    this.lastRefusal = undefined;
    this.wake?.();
  }

  /**
   * At a start: a growth a crash interrupted (the file grown, the table not yet) is finished,
   * then what was asked for is done. A failure is reported, not thrown: the pool serves as it is,
   * and the growth loop tries again.
   */
  async converge(ctx: OpContext): Promise<GrowOutcome | undefined> {
    try {
      return await this.check(ctx);
    } catch (err) {
      return this.report({ kind: 'failed', reason: 'device_grew', message: errorMessage(err) });
    }
  }

  /** One pass: the table catches up with its devices, then an explicit request, then the low-water rule. */
  async check(ctx: OpContext): Promise<GrowOutcome | undefined> {
    const caught = await this.takeDevices(ctx, 'device_grew');
    if (caught) return this.report(caught);
    const table = await this.deps.dm.poolTable(ctx, this.pool);
    const current = table.lengthSectors * SECTOR;
    const blockBytes = table.dataBlockSectors * SECTOR;
    // The table holds whole data blocks: a size between two of them asks for the lower one.
    const requested = this.requested === undefined ? 0 : Math.floor(this.requested / blockBytes) * blockBytes;
    if (requested > current) return this.report(await this.growTo(ctx, table, requested, 'requested'));
    if (!this.autoGrowth) return undefined;
    const status = await this.deps.dm.poolStatus(ctx, this.pool);
    // dm-thin raises its event at free <= mark (check_low_water_mark): the same test here, or a pool at the mark would fill unseen.
    if (status.totalDataBlocks - status.usedDataBlocks > this.lowWaterBlocks(status.totalDataBlocks)) {
      this.lastRefusal = undefined;
      return undefined;
    }
    const max = this.settings.maxDataBytes as number;
    const step = Math.max(blockBytes, Math.floor(current * (this.settings.stepPercent ?? DEFAULT_STEP_PERCENT) / 100));
    if (current >= max) {
      return this.report({ kind: 'refused', reason: 'ceiling', wantedBytes: current + step, message: `pool ${this.pool} is at its growth ceiling of ${max} bytes (--pool-grow-max)` });
    }
    return this.report(await this.growTo(ctx, table, Math.min(max, current + step), 'low_water'));
  }

  /**
   * Makes the loops see their files' sizes and reloads the table when its devices are larger
   * than it (or the low-water mark is not the wanted one). A device smaller than its table is
   * left alone: the kernel would refuse the table, and shrinking loses data.
   */
  async takeDevices(ctx: OpContext, reason: GrowReason): Promise<GrowOutcome | undefined> {
    const { dm, mounter } = this.deps;
    if (this.backing.files) {
      await this.refreshLoop(ctx, this.backing.files.data, this.backing.dataDevice);
      await this.refreshLoop(ctx, this.backing.files.metadata, this.backing.metadataDevice);
    }
    const table = await dm.poolTable(ctx, this.pool);
    const bs = table.dataBlockSectors;
    const sectors = Math.floor((await mounter.blockSize(ctx, this.backing.dataDevice)) / SECTOR / bs) * bs;
    const metaBlocks = Math.min(MAX_METADATA_BLOCKS, Math.floor((await mounter.blockSize(ctx, this.backing.metadataDevice)) / METADATA_BLOCK_BYTES));
    const status = await dm.poolStatus(ctx, this.pool);
    if (sectors < table.lengthSectors) {
      this.deps.log.error('the pool data device is smaller than the pool table: left alone', { pool: this.pool, device: this.backing.dataDevice, deviceSectors: sectors, tableSectors: table.lengthSectors });
      return undefined;
    }
    const lowWater = this.autoGrowth ? this.lowWaterBlocks(sectors / bs) : table.lowWaterMark;
    if (sectors === table.lengthSectors && metaBlocks <= status.totalMetadataBlocks && lowWater === table.lowWaterMark) return undefined;
    await this.reload(ctx, table, sectors, lowWater);
    if (sectors === table.lengthSectors) return undefined; // the metadata device or the mark only: no data growth to tell
    return { kind: 'grown', reason, fromBytes: table.lengthSectors * SECTOR, toBytes: sectors * SECTOR };
  }

  private lowWaterBlocks(totalBlocks: number): number {
    return Math.max(1, Math.ceil(totalBlocks * (this.settings.lowWaterPercent ?? DEFAULT_LOW_WATER_PERCENT) / 100));
  }

  private async refreshLoop(ctx: OpContext, file: string, device: string): Promise<void> {
    const { lengthBytes } = await this.fs.usage(file);
    if ((await this.deps.mounter.blockSize(ctx, device)) < lengthBytes) await this.deps.loops.refresh(ctx, device);
  }

  /** The data file grows (as far as its filesystem can hold it), then the table takes it. */
  private async growTo(ctx: OpContext, table: ThinPoolTable, wanted: number, reason: GrowReason): Promise<GrowOutcome> {
    const files = this.backing.files;
    const current = table.lengthSectors * SECTOR;
    if (!files) {
      return { kind: 'refused', reason: 'not_file', wantedBytes: wanted, message: `pool ${this.pool} is on block devices: grow ${this.backing.dataDevice} (lvextend, a larger disk), and the pool takes the new size at its next check` };
    }
    const blockBytes = table.dataBlockSectors * SECTOR;
    const file = await this.fs.usage(files.data);
    const room = file.allocatedBytes + await this.fs.availableBytes(dirname(files.data));
    const target = Math.floor(Math.min(wanted, room) / blockBytes) * blockBytes;
    if (target <= current) {
      return { kind: 'refused', reason: 'no_room', wantedBytes: wanted, message: `the filesystem under ${files.data} can hold ${room} bytes of pool data, not the ${wanted} wanted: free space there, or move the pool` };
    }
    if (file.lengthBytes < target) await truncate(files.data, target);
    const done = await this.takeDevices(ctx, reason);
    if (!done || done.kind !== 'grown') return { kind: 'failed', reason, message: `grew ${files.data} to ${target} bytes, but pool ${this.pool} did not take it` };
    return done;
  }

  /**
   * The new table is loaded first (it opens the devices, which can be slow), so the pool is
   * suspended only for the swap. --noflush: I/O a full pool holds stays queued, not flushed.
   * The status must then show the new total, or the growth is a failure, said as one.
   */
  private async reload(ctx: OpContext, t: ThinPoolTable, sectors: number, lowWater: number): Promise<void> {
    const features = t.features.length > 0 ? ` ${t.features.length} ${t.features.join(' ')}` : '';
    const line = (length: number, mark: number) => `0 ${length} thin-pool ${t.metadataDev} ${t.dataDev} ${t.dataBlockSectors} ${mark}${features}`;
    const { dm } = this.deps;
    await this.serialise(async () => {
      await dm.reload(ctx, this.pool, line(sectors, lowWater));
      await dm.suspend(ctx, this.pool, { noFlush: true });
      try {
        await dm.resume(ctx, this.pool);
      } catch (err) {
        // A table whose resume failed is live but suspended (its preresume refused): the old one goes back.
        await dm.reload(ctx, this.pool, line(t.lengthSectors, t.lowWaterMark)).catch(() => undefined);
        await dm.resume(ctx, this.pool).catch(() => undefined);
        throw err;
      }
    });
    const status = await dm.poolStatus(ctx, this.pool);
    if (status.totalDataBlocks * t.dataBlockSectors !== sectors) {
      throw new Error(`pool ${this.pool} reports ${status.totalDataBlocks} data blocks after its reload to ${sectors / t.dataBlockSectors}: the kernel did not take the new size`);
    }
    await this.afterGrowth(ctx).catch(() => undefined);
  }

  private report(o: GrowOutcome | undefined): GrowOutcome | undefined {
    if (!o) return o;
    const labels = { pool: this.pool, outcome: o.kind, reason: o.reason };
    if (o.kind === 'refused') {
      if (this.lastRefusal === o.message) return o;
      this.lastRefusal = o.message;
      this.deps.log.warn('pool growth refused', { ...labels, why: o.message });
    } else if (o.kind === 'failed') {
      this.deps.log.error('pool growth failed', { ...labels, why: o.message });
    } else {
      this.lastRefusal = undefined;
      this.deps.log.info('pool grown', { ...labels, fromBytes: o.fromBytes, toBytes: o.toBytes });
    }
    this.deps.metrics.poolGrowths.inc(labels);
    this.onOutcome?.(o);
    return o;
  }

  /**
   * Checks now, then after each of the pool's events (DM_DEV_WAIT) and at least every
   * `everyMs` (a device grown behind the driver raises no event of the pool's). Errors are
   * logged and the loop goes on; `stop` ends it at once.
   */
  start(everyMs = 60_000): void {
    if (this.loop) return;
    const stop = new AbortController();
    const done = (async () => {
      let seen = (await this.deps.dm.info({}, this.pool).catch(() => undefined))?.events ?? 0;
      while (!stop.signal.aborted) {
        await this.check(withTimeout({ signal: stop.signal }, 60_000)).catch((err: unknown) => {
          if (!stop.signal.aborted) this.report({ kind: 'failed', reason: 'low_water', message: errorMessage(err) });
        });
        seen = await this.nextEvent(stop.signal, seen, everyMs);
      }
    })();
    this.loop = { stop, done };
  }

  /** The pool's next event number, or the same one after `everyMs`, a request, or a stop. */
  private async nextEvent(signal: AbortSignal, seen: number, everyMs: number): Promise<number> {
    const woken = new AbortController();
    this.wake = () => woken.abort();
    try {
      // A stop that came during the check has already fired: AbortSignal.any sees it all the same.
      return await this.deps.dm.waitEvent(withTimeout({ signal: AbortSignal.any([signal, woken.signal]) }, everyMs), this.pool, seen);
    } catch (err) {
      if (signal.aborted) return seen;
      if (!isDmError(err, 'timeout')) await sleep(1_000, signal).catch(() => undefined); // the pool gone or the kernel refusing: not a busy loop
      return (await this.deps.dm.info({}, this.pool).catch(() => undefined))?.events ?? seen;
    } finally {
      this.wake = undefined;
    }
  }

  async stop(): Promise<void> {
    const l = this.loop;
    this.loop = undefined;
    if (!l) return;
    l.stop.abort();
    await l.done;
  }
}

/** The backing of a pool the driver built (a file pool's loops found again); undefined for an adopted one. */
export async function backingOf(ctx: OpContext, loops: LoopDevices, src: { kind: string; dir?: string; dataDevice?: string; metadataDevice?: string }): Promise<Backing | undefined> {
  if (src.kind === 'devices' && src.dataDevice && src.metadataDevice) return { dataDevice: src.dataDevice, metadataDevice: src.metadataDevice };
  if (src.kind !== 'loop' || !src.dir) return undefined;
  const files = loopFiles(src.dir);
  const [data, metadata] = [await loops.find(ctx, files.data), await loops.find(ctx, files.metadata)];
  return data && metadata ? { dataDevice: data, metadataDevice: metadata, files } : undefined;
}
