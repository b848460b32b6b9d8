import type { CreateSnapshotRequest__Output as CreateReq } from '../csi/generated/csi/v1/CreateSnapshotRequest.ts';
import type { GetSnapshotRequest__Output as GetReq } from '../csi/generated/csi/v1/GetSnapshotRequest.ts';
import type { ListSnapshotsRequest__Output as ListReq } from '../csi/generated/csi/v1/ListSnapshotsRequest.ts';
import type { ListSnapshotsResponse } from '../csi/generated/csi/v1/ListSnapshotsResponse.ts';
import type { Snapshot } from '../csi/generated/csi/v1/Snapshot.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import type { VolumeBackend } from './backend.ts';
import { paginate } from './paginate.ts';
import { checkMapSize, validateName } from './validate.ts';
import { idFor, parseId } from '../volume/ids.ts';
import { META, snapshotMeta } from '../volume/meta.ts';

export function toSnapshot(rec: DeviceRecord): Snapshot {
  const ms = Date.parse(rec.createdAt);
  return {
    snapshot_id: rec.id,
    source_volume_id: rec.meta[META.sourceId] ?? '',
    size_bytes: rec.sizeBytes,
    creation_time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    // Thin snapshots are complete the moment create_snap returns: nothing is copied.
    ready_to_use: rec.state !== 'Creating' && rec.state !== 'Faulty',
    group_snapshot_id: rec.meta[META.groupId] ?? '',
  };
}

export async function createSnapshot(ctx: OpContext, backend: VolumeBackend, req: CreateReq): Promise<{ snapshot: Snapshot }> {
  validateName(req.name);
  if (!req.source_volume_id) throw invalidArgument('source_volume_id is required');
  checkMapSize(req.parameters, 'parameters');
  checkMapSize(req.secrets, 'secrets');
  for (const k of Object.keys(req.parameters ?? {})) {
    if (!k.startsWith('csi.storage.k8s.io/')) throw invalidArgument(`parameters.${k} is not a snapshot parameter of this driver`);
  }
  const id = idFor('snap', req.name);
  const existing = await backend.get(ctx, id);
  if (existing && existing.state !== 'Faulty') {
    if (existing.meta[META.sourceId] !== req.source_volume_id) {
      throw alreadyExists(`snapshot "${req.name}" already exists for volume ${existing.meta[META.sourceId]}, not ${req.source_volume_id}`);
    }
    return { snapshot: toSnapshot(existing) };
  }
  const source = parseId(req.source_volume_id)?.kind === 'volume' ? await backend.get(ctx, req.source_volume_id) : undefined;
  if (!source) throw notFound(`source volume ${req.source_volume_id} does not exist`);
  if (source.state === 'Faulty') throw failedPrecondition(`source volume ${source.id} is Faulty: ${source.error ?? ''}`);
  if (existing) await backend.remove(ctx, id); // a Faulty leftover of an earlier attempt
  const rec = await backend.create(ctx, {
    id, kind: 'snapshot', sizeBytes: source.sizeBytes, origin: source.id,
    meta: snapshotMeta(req.name, source),
  });
  return { snapshot: toSnapshot(rec) };
}

export async function listSnapshots(ctx: OpContext, backend: VolumeBackend, req: ListReq): Promise<ListSnapshotsResponse> {
  let snaps = (await backend.list(ctx)).filter((r) => r.kind === 'snapshot' && r.state !== 'Creating');
  if (req.snapshot_id) snaps = snaps.filter((r) => r.id === req.snapshot_id);
  if (req.source_volume_id) snaps = snaps.filter((r) => r.meta[META.sourceId] === req.source_volume_id);
  const { page, next } = paginate(snaps, req.max_entries, req.starting_token, (t) => parseId(t)?.kind === 'snapshot');
  return { entries: page.map((r) => ({ snapshot: toSnapshot(r) })), next_token: next };
}

/**
 * GetSnapshot: any snapshot the backend knows, a group's members included (the spec asks it
 * of group snapshot drivers) and one still being cut (ready_to_use false, as the spec wants it
 * retrievable). An id this driver could never have issued names nothing: NOT_FOUND.
 */
export async function getSnapshot(ctx: OpContext, backend: VolumeBackend, req: GetReq): Promise<{ snapshot: Snapshot }> {
  if (!req.snapshot_id) throw invalidArgument('snapshot_id is required');
  const rec = parseId(req.snapshot_id)?.kind === 'snapshot' ? await backend.get(ctx, req.snapshot_id) : undefined;
  if (!rec || rec.kind !== 'snapshot') throw notFound(`snapshot ${req.snapshot_id} does not exist`);
  return { snapshot: toSnapshot(rec) };
}
