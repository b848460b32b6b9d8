import { ThinTools, type BlockRun, type DeltaRun, type MetadataSource, type ThinMetadataReader } from '../devmapper/thin-tools.ts';
import { isDmError, SECTOR, type DeviceMapper } from '../devmapper/types.ts';
import { unavailable } from '../errors.ts';
import type { Logger } from '../observability/log.ts';
import type { OpContext } from '../system/context.ts';
import { KeyedMutex } from '../system/lock.ts';
import type { StateStore } from '../state/types.ts';

/**
 * The kernel keeps one metadata snapshot per pool: every reader of one in this process (these
 * readers, the reconcile's thin_ls) queues here, by pool name.
 */
const held = new KeyedMutex();

/** Runs fn as the pool's only metadata-snapshot user in this process. */
export function metadataSnapExclusive<T>(pool: string, fn: () => Promise<T>): Promise<T> {
  return held.run(pool, fn);
}

/**
 * Takes the pool's metadata-snapshot turn for as long as a generator runs (a stream's length, not
 * one call): resolves with the release once it is ours, or rejects if ctx is aborted first.
 */
async function takeTurn(ctx: OpContext, pool: string): Promise<() => Promise<void>> {
  let release!: () => void;
  let entered!: () => void;
  const done = new Promise<void>((r) => { release = r; });
  const ours = new Promise<void>((r) => { entered = r; });
  const queued = held.run(pool, async () => { entered(); await done; });
  const free = async () => { release(); await queued; };
  if (ctx.signal?.aborted) { await free(); ctx.signal.throwIfAborted(); }
  const onAbort = new Promise<never>((_, reject) => ctx.signal?.addEventListener('abort', () => reject(ctx.signal!.reason), { once: true }));
  onAbort.catch(() => undefined);
  try {
    await Promise.race([ours, onAbort]);
  } catch (err) {
    await free();
    throw err;
  }
  return free;
}

export interface MetadataSnapDeps { dm: DeviceMapper; store: StateStore; log: Logger }

/** What a pool's block maps are read over: its name, data block size, and where its records are. */
export interface PoolRef { name: string; dataBlockSectors: number; deps: MetadataSnapDeps }

/**
 * Block maps of a pool's thin devices, read from a metadata snapshot of the live pool: the
 * kernel commits and then freezes a copy of the metadata (`reserve_metadata_snap`), which the
 * tools read while the pool goes on serving. Intent is recorded in the pool record before the
 * reserve and cleared after the release, so a hold a crash left behind is known to be ours and
 * released (at the next attach, or by the next reader).
 */
export class PoolMetadata {
  readonly pool: string;
  /** Bytes per pool data block: the unit of every run. */
  readonly blockBytes: number;
  private readonly deps: MetadataSnapDeps;
  private readonly reader: ThinMetadataReader;

  constructor(pool: PoolRef, reader: ThinMetadataReader = new ThinTools()) {
    this.pool = pool.name;
    this.blockBytes = pool.dataBlockSectors * SECTOR;
    this.deps = pool.deps;
    this.reader = reader;
  }

  /** The runs `devId` maps, ascending; `confirm` runs once the snapshot is held, before the read. */
  allocated(ctx: OpContext, devId: number, confirm: () => Promise<void>): AsyncGenerator<BlockRun> {
    return this.whileHeld(ctx, confirm, (src) => this.reader.mappings(ctx, src, devId));
  }

  /** The runs mapped in either device and how they compare, ascending. */
  delta(ctx: OpContext, base: number, target: number, confirm: () => Promise<void>): AsyncGenerator<DeltaRun> {
    return this.whileHeld(ctx, confirm, (src) => this.reader.delta(ctx, src, base, target));
  }

  /** A hold this driver recorded but never released (a crash mid-read): release it. Called at attach. */
  async releaseStale(ctx: OpContext): Promise<void> {
    await metadataSnapExclusive(this.pool, async () => {
      if ((await this.deps.store.getPool())?.metadataSnapHeld !== true) return;
      await this.deps.dm.message(ctx, this.pool, 'release_metadata_snap').catch((err: unknown) => {
        if (!isDmError(err, 'invalid')) throw err; // EINVAL: none held, the crash came before the reserve
      });
      await this.record(false);
      this.deps.log.warn('released a metadata snapshot left held by a crash', { pool: this.pool });
    });
  }

  private async *whileHeld<T>(ctx: OpContext, confirm: () => Promise<void>, read: (src: MetadataSource) => AsyncGenerator<T>): AsyncGenerator<T> {
    const free = await takeTurn(ctx, this.pool);
    try {
      const src = { pool: this.pool, metadataDev: (await this.deps.dm.poolTable(ctx, this.pool)).metadataDev };
      await this.reserve(ctx);
      try {
        await confirm();
        yield* read(src);
      } finally {
        // On every path out, the consumer's early stop and a cancel included; a release that
        // fails leaves the record set, and the next reader or attach releases it.
        await this.deps.dm.message({}, this.pool, 'release_metadata_snap');
        await this.record(false);
      }
    } finally {
      await free();
    }
  }

  private async reserve(ctx: OpContext): Promise<void> {
    const stale = (await this.deps.store.getPool())?.metadataSnapHeld === true;
    await this.record(true);
    if (stale) await this.deps.dm.message(ctx, this.pool, 'release_metadata_snap').catch(() => undefined);
    try {
      await this.deps.dm.message(ctx, this.pool, 'reserve_metadata_snap');
    } catch (err) {
      await this.record(false);
      if (isDmError(err, 'busy')) {
        throw unavailable(`a metadata snapshot of pool ${this.pool} is held by another tool (release it with dmsetup message ${this.pool} 0 release_metadata_snap if nothing uses it)`);
      }
      throw err;
    }
  }

  private async record(on: boolean): Promise<void> {
    await this.deps.store.updatePool((p) => ({ ...(p ?? { name: this.pool, transactionId: 0 }), metadataSnapHeld: on, updatedAt: new Date().toISOString() }));
  }
}
