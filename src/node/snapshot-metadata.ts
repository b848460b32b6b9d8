import type { SnapshotMetadataRpcs } from '../csi/stream-rpcs.ts';
import type { BlockMetadata } from '../csi/generated/csi/v1/BlockMetadata.ts';
import { invalidArgument, notFound, outOfRange } from '../errors.ts';
import type { PoolMetadata } from '../pool/metadata-snap.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord, StateStore } from '../state/types.ts';

/** Ranges per response when the caller leaves max_results at 0: about 16 KiB on the wire. */
export const DEFAULT_MAX_RESULTS = 1024;

export interface SnapshotMetadataDeps {
  /** The records of the node's pool: which snapshot is which thin device, and its size. */
  store: StateStore;
  /** The pool's block maps (pool/metadata-snap.ts). */
  metadata: PoolMetadata;
}

/** A run in bytes: [start, end). */
interface Span { start: number; end: number }

const GONE = new Set(['Creating', 'Faulty', 'Removing', 'Removed']);

async function snapshotRecord(store: StateStore, id: string, field: string): Promise<DeviceRecord> {
  if (id === '') throw invalidArgument(`${field} is required`);
  const rec = await store.getDevice(id);
  if (!rec || rec.kind !== 'snapshot' || GONE.has(rec.state)) throw notFound(`snapshot ${id} does not exist`);
  return rec;
}

/** Once the metadata snapshot is held: the records still name the same thin devices, so the read is of them. */
function confirmer(store: StateStore, recs: DeviceRecord[]): () => Promise<void> {
  return async () => {
    for (const r of recs) {
      const now = await store.getDevice(r.id);
      if (!now || GONE.has(now.state) || now.deviceId !== r.deviceId) throw notFound(`snapshot ${r.id} does not exist`);
    }
  };
}

function checkPaging(startingOffset: number, maxResults: number, capacity: number): void {
  if (!Number.isInteger(maxResults) || maxResults < 0) throw invalidArgument(`max_results ${maxResults} must not be negative`);
  if (!Number.isSafeInteger(startingOffset) || startingOffset < 0 || startingOffset > capacity) {
    throw outOfRange(`starting_offset ${startingOffset} is outside the snapshot (0 to ${capacity} bytes)`);
  }
}

/**
 * Block runs as byte ranges: clipped to the capacity and to what ends after `from` (the first
 * range starts at `from` at the latest, so a resumed call goes on exactly where it stopped), and
 * adjacent runs merged, so their sizes vary (VARIABLE_LENGTH).
 */
export async function* byteRanges(runs: AsyncIterable<{ begin: number; length: number }>, blockBytes: number, from: number, capacity: number): AsyncGenerator<Span> {
  let open: Span | undefined;
  for await (const r of runs) {
    const start = Math.max(from, r.begin * blockBytes);
    const end = Math.min(capacity, (r.begin + r.length) * blockBytes);
    if (end <= start) {
      if (r.begin * blockBytes >= capacity) break; // ascending: nothing further can fall inside
      continue;
    }
    if (open && start <= open.end) { open.end = Math.max(open.end, end); continue; }
    if (open) yield open;
    open = { start, end };
  }
  if (open) yield open;
}

/** Sends ranges in responses of at most `max` each, every one with the stream's type and capacity; at least one. */
async function page(spans: AsyncIterable<Span>, max: number, capacity: number, send: (res: { block_metadata_type: 'VARIABLE_LENGTH'; volume_capacity_bytes: number; block_metadata: BlockMetadata[] }) => Promise<void>): Promise<void> {
  let batch: BlockMetadata[] = [];
  let sent = false;
  const flush = async () => {
    await send({ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: capacity, block_metadata: batch });
    batch = [];
    sent = true;
  };
  for await (const s of spans) {
    batch.push({ byte_offset: s.start, size_bytes: s.end - s.start });
    if (batch.length >= max) await flush();
  }
  // An empty stream would leave the caller without the capacity: one empty response says it.
  if (batch.length > 0 || !sent) await flush();
}

async function* changed(runs: AsyncIterable<{ kind: string; begin: number; length: number }>): AsyncGenerator<{ begin: number; length: number }> {
  for await (const r of runs) if (r.kind !== 'same') yield r;
}

/**
 * The CSI SnapshotMetadata service over one node's pool. Allocated: the runs the snapshot's thin
 * device maps. Delta: the runs whose content may differ, i.e. mapped to different data blocks,
 * or mapped in one device only (a run the target does not map reads back as zeros, so it
 * changed too). Runs neither maps are zeros in both and left out.
 */
export function createSnapshotMetadata(deps: SnapshotMetadataDeps): SnapshotMetadataRpcs {
  const { store, metadata } = deps;
  const max = (n: number) => (n === 0 ? DEFAULT_MAX_RESULTS : n);
  return {
    async GetMetadataAllocated(ctx: OpContext, req, send) {
      const snap = await snapshotRecord(store, req.snapshot_id, 'snapshot_id');
      const capacity = snap.sizeBytes;
      checkPaging(req.starting_offset, req.max_results, capacity);
      const runs = metadata.allocated(ctx, snap.deviceId, confirmer(store, [snap]));
      await page(byteRanges(runs, metadata.blockBytes, req.starting_offset, capacity), max(req.max_results), capacity, send);
    },

    async GetMetadataDelta(ctx: OpContext, req, send) {
      const base = await snapshotRecord(store, req.base_snapshot_id, 'base_snapshot_id');
      const target = await snapshotRecord(store, req.target_snapshot_id, 'target_snapshot_id');
      if (base.origin !== target.origin) {
        throw invalidArgument(`snapshots ${base.id} and ${target.id} are of different volumes (${base.origin ?? '?'}, ${target.origin ?? '?'})`);
      }
      const capacity = target.sizeBytes;
      checkPaging(req.starting_offset, req.max_results, capacity);
      const runs = metadata.delta(ctx, base.deviceId, target.deviceId, confirmer(store, [base, target]));
      await page(byteRanges(changed(runs), metadata.blockBytes, req.starting_offset, capacity), max(req.max_results), capacity, send);
    },
  };
}
