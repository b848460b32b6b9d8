/**
 * A small SnapshotMetadataRpcs for the channel's tests, standing in for the node's real service
 * (answered from the pool's metadata, built elsewhere): snapshots are lists of mapped ranges,
 * a delta is the target's ranges the base does not have identically. It counts what it hands to
 * `send` and records each call's context, so tests can see backpressure and cancellation reach it.
 */
import { Code, CsiError, notFound, outOfRange } from '../../../../src/errors.ts';
import type { GetMetadataAllocatedResponse } from '../../../../src/csi/generated/csi/v1/GetMetadataAllocatedResponse.ts';
import type { SnapshotMetadataRpcs } from '../../../../src/csi/stream-rpcs.ts';
import type { OpContext } from '../../../../src/system/context.ts';

export type Range = [offset: number, size: number];
export interface FakeSnapshot { capacity: number; ranges: Range[] }

export class FakeSnapshotMetadata implements SnapshotMetadataRpcs {
  readonly snapshots = new Map<string, FakeSnapshot>();
  /** Messages handed to send so far (all calls). */
  produced = 0;
  readonly contexts: OpContext[] = [];
  /** Calls that ended because their context aborted. */
  aborted = 0;

  add(id: string, capacity: number, ranges: Range[]): void { this.snapshots.set(id, { capacity, ranges }); }

  async GetMetadataAllocated(ctx: OpContext, req: { snapshot_id: string; starting_offset: number; max_results: number }, send: (r: GetMetadataAllocatedResponse) => Promise<void>) {
    const s = this.get(req.snapshot_id);
    await this.stream(ctx, s.capacity, s.ranges, req.starting_offset, req.max_results, send);
  }

  async GetMetadataDelta(ctx: OpContext, req: { base_snapshot_id: string; target_snapshot_id: string; starting_offset: number; max_results: number }, send: (r: GetMetadataAllocatedResponse) => Promise<void>) {
    const base = this.get(req.base_snapshot_id);
    const target = this.get(req.target_snapshot_id);
    const same = new Set(base.ranges.map((r) => r.join(':')));
    await this.stream(ctx, target.capacity, target.ranges.filter((r) => !same.has(r.join(':'))), req.starting_offset, req.max_results, send);
  }

  private get(id: string): FakeSnapshot {
    const s = this.snapshots.get(id);
    if (!s) throw notFound(`snapshot ${id} is not in this pool`);
    return s;
  }

  private async stream(ctx: OpContext, capacity: number, ranges: Range[], start: number, max: number, send: (r: GetMetadataAllocatedResponse) => Promise<void>) {
    this.contexts.push(ctx);
    if (start < 0 || start > capacity) throw outOfRange(`starting_offset ${start} is outside the volume (${capacity} bytes)`);
    const left = ranges.filter(([o, n]) => o + n > start);
    const per = max > 0 ? max : 100;
    try {
      for (let i = 0; i < left.length; i += per) {
        if (ctx.signal?.aborted) throw new CsiError(Code.CANCELLED, 'cancelled');
        await send({ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: capacity, block_metadata: left.slice(i, i + per).map(([byte_offset, size_bytes]) => ({ byte_offset, size_bytes })) });
        this.produced++;
      }
    } catch (err) {
      if (ctx.signal?.aborted) this.aborted++;
      throw err;
    }
  }
}

/** `n` ranges of one 64 KiB block every other block. */
export function everyOther(n: number, from = 0): Range[] {
  return Array.from({ length: n }, (_, i) => [from + i * 2 * 65536, 65536] as Range);
}
