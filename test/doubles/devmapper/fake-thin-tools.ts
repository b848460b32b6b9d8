import type { BlockRun, DeltaKind, DeltaRun, MetadataSource, ThinMetadataReader } from '../../../src/devmapper/thin-tools.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import type { OpContext } from '../../../src/system/context.ts';
import type { FakePoolMetadata } from './fake-pool.ts';
import { KernelError } from './fake-pool.ts';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * thin_dump and thin_delta over a fake pool's held metadata snapshot: the maps as they were at
 * reserve_metadata_snap, so a write or delete after it is not seen, and no snapshot held fails as
 * the tools do. Runs break where the data blocks stop being contiguous, as thin_dump's
 * range_mappings do, so callers see adjacent runs to merge.
 */
export class FakeThinTools implements ThinMetadataReader {
  /** Every read: which tool, on which pool, of which devices. */
  readonly reads: string[] = [];
  /** Runs yielded so far (a cancelled read stops adding). */
  yielded = 0;
  readonly #meta: (pool: string) => FakePoolMetadata;

  constructor(meta: (pool: string) => FakePoolMetadata) {
    this.#meta = meta;
  }

  #held(ctx: OpContext, src: MetadataSource, id: number, tool: string): ReadonlyMap<number, number> {
    ctx.signal?.throwIfAborted();
    let map: ReadonlyMap<number, number> | undefined;
    try {
      map = this.#meta(src.pool).heldMap(id);
    } catch (err) {
      if (err instanceof KernelError) throw new DmError('no_data', `${tool}: no metadata snapshot is held`);
      throw err;
    }
    if (!map) throw new DmError('not_found', `${tool}: Unable to find mapping tree for ${id}`);
    return map;
  }

  async *mappings(ctx: OpContext, src: MetadataSource, devId: number): AsyncGenerator<BlockRun> {
    this.reads.push(`thin_dump ${src.pool} ${devId}`);
    const map = this.#held(ctx, src, devId, 'thin_dump');
    let run: { begin: number; length: number; phys: number } | undefined;
    for (const block of [...map.keys()].sort((a, b) => a - b)) {
      const phys = map.get(block)!;
      if (run && block === run.begin + run.length && phys === run.phys + run.length) { run.length++; continue; }
      if (run) yield* this.#emit(ctx, { begin: run.begin, length: run.length });
      run = { begin: block, length: 1, phys };
    }
    if (run) yield* this.#emit(ctx, { begin: run.begin, length: run.length });
  }

  async *delta(ctx: OpContext, src: MetadataSource, left: number, right: number): AsyncGenerator<DeltaRun> {
    this.reads.push(`thin_delta ${src.pool} ${left} ${right}`);
    const a = this.#held(ctx, src, left, 'thin_delta');
    const b = this.#held(ctx, src, right, 'thin_delta');
    const kindOf = (block: number): DeltaKind => {
      const x = a.get(block);
      const y = b.get(block);
      if (x === undefined) return 'right_only';
      if (y === undefined) return 'left_only';
      return x === y ? 'same' : 'different';
    };
    let run: DeltaRun | undefined;
    for (const block of [...new Set([...a.keys(), ...b.keys()])].sort((p, q) => p - q)) {
      const kind = kindOf(block);
      if (run && run.kind === kind && block === run.begin + run.length) { run.length++; continue; }
      if (run) yield* this.#emit(ctx, run);
      run = { kind, begin: block, length: 1 };
    }
    if (run) yield* this.#emit(ctx, run);
  }

  /** One run out, after a turn of the event loop, as a pipe's lines arrive; a cancel stops the read. */
  async *#emit<T>(ctx: OpContext, run: T): AsyncGenerator<T> {
    await tick();
    ctx.signal?.throwIfAborted();
    this.yielded++;
    yield run;
  }
}
