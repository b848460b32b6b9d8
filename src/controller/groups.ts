import type { CreateVolumeGroupSnapshotRequest__Output as CreateReq } from '../csi/generated/csi/v1/CreateVolumeGroupSnapshotRequest.ts';
import type { DeleteVolumeGroupSnapshotRequest__Output as DeleteReq } from '../csi/generated/csi/v1/DeleteVolumeGroupSnapshotRequest.ts';
import type { GetVolumeGroupSnapshotRequest__Output as GetReq } from '../csi/generated/csi/v1/GetVolumeGroupSnapshotRequest.ts';
import type { GroupControllerGetCapabilitiesResponse } from '../csi/generated/csi/v1/GroupControllerGetCapabilitiesResponse.ts';
import type { VolumeGroupSnapshot } from '../csi/generated/csi/v1/VolumeGroupSnapshot.ts';
import type { GroupControllerRpcs } from '../csi/rpcs.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import type { GroupBackend, GroupSnapshotView, VolumeBackend } from './backend.ts';
import { toSnapshot } from './snapshots.ts';
import { checkMapSize, validateName } from './validate.ts';
import { groupIdFor, isGroupId, memberIdFor, parseId } from '../volume/ids.ts';
import { META, snapshotMeta } from '../volume/meta.ts';

function toGroup(v: GroupSnapshotView): VolumeGroupSnapshot {
  const ms = Date.parse(v.group.createdAt);
  return {
    group_snapshot_id: v.group.id,
    snapshots: v.members.map(toSnapshot),
    creation_time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    // Cut in one freeze: complete the moment the last create_snap returned.
    ready_to_use: v.group.state === 'Ready',
  };
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\0') === [...b].sort().join('\0');

/**
 * CSI GroupController: group snapshots of volumes in one thin pool, taken in one instant
 * (every member suspended before the first snapshot, resumed after the last). Members are
 * ordinary snapshots otherwise: listed, restorable, deleted only with their group.
 */
export class GroupControllerService implements GroupControllerRpcs {
  private readonly backend: VolumeBackend;
  private readonly groups: GroupBackend;
  constructor(backend: VolumeBackend, groups: GroupBackend) {
    this.backend = backend;
    this.groups = groups;
  }

  GroupControllerGetCapabilities(): GroupControllerGetCapabilitiesResponse {
    return { capabilities: [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }] };
  }

  async CreateVolumeGroupSnapshot(ctx: OpContext, req: CreateReq): Promise<{ group_snapshot: VolumeGroupSnapshot }> {
    validateName(req.name);
    const ids = req.source_volume_ids ?? [];
    if (ids.length === 0 || ids.some((id) => !id)) throw invalidArgument('source_volume_ids is required and may not contain empty ids');
    const dup = ids.find((id, i) => ids.indexOf(id) !== i);
    if (dup) throw invalidArgument(`source_volume_ids lists ${dup} twice`);
    checkMapSize(req.parameters, 'parameters');
    checkMapSize(req.secrets, 'secrets'); // accepted and ignored: nothing here needs credentials
    for (const k of Object.keys(req.parameters ?? {})) {
      if (!k.startsWith('csi.storage.k8s.io/')) throw invalidArgument(`parameters.${k} is not a group snapshot parameter of this driver`);
    }
    const id = groupIdFor(req.name);
    const existing = await this.groups.getGroup(ctx, id);
    if (existing && existing.group.state === 'Ready') {
      const had = existing.group.members.map((m) => m.sourceId);
      if (!sameSet(had, ids)) throw alreadyExists(`group snapshot "${req.name}" already exists for volumes ${had.join(', ')}, not ${ids.join(', ')}`);
      return { group_snapshot: toGroup(existing) };
    }
    const sources = await this.sources(ctx, ids);
    const view = await this.groups.createGroup(ctx, {
      id, meta: { [META.name]: req.name }, // its CSI name, which the kube backend keeps as csiName
      members: sources.map((s) => ({
        snapshotId: memberIdFor(req.name, s.id), sourceId: s.id,
        meta: { ...snapshotMeta(req.name, s), [META.groupId]: id },
      })),
    });
    return { group_snapshot: toGroup(view) };
  }

  /** Every source exists, is healthy, and all live in one pool (one node): a thin snapshot can only be cut there. */
  private async sources(ctx: OpContext, ids: string[]): Promise<DeviceRecord[]> {
    const recs: DeviceRecord[] = [];
    for (const id of ids) {
      const rec = parseId(id)?.kind === 'volume' ? await this.backend.get(ctx, id) : undefined;
      if (!rec) throw notFound(`source volume ${id} does not exist`);
      if (rec.state === 'Faulty') throw failedPrecondition(`source volume ${id} is Faulty: ${rec.error ?? ''}`);
      recs.push(rec);
    }
    const key = this.backend.topologyKey;
    const nodes = new Map(recs.map((r) => [r.id, this.backend.topologyOf(r)[key] ?? '']));
    if (new Set(nodes.values()).size > 1) {
      const where = [...nodes].map(([v, n]) => `${v} on ${n}`).join(', ');
      throw invalidArgument(`the volumes of a group snapshot must all be on one node: ${where}. A group snapshot is one instant of one thin pool (every member suspended together), and each node has its own pool`);
    }
    return recs;
  }

  async GetVolumeGroupSnapshot(ctx: OpContext, req: GetReq): Promise<{ group_snapshot: VolumeGroupSnapshot }> {
    const view = await this.checked(ctx, req.group_snapshot_id, req.snapshot_ids);
    if (!view || view.group.state !== 'Ready') throw notFound(`group snapshot ${req.group_snapshot_id} does not exist`);
    return { group_snapshot: toGroup(view) };
  }

  async DeleteVolumeGroupSnapshot(ctx: OpContext, req: DeleteReq): Promise<object> {
    const view = await this.checked(ctx, req.group_snapshot_id, req.snapshot_ids);
    if (view) await this.groups.removeGroup(ctx, view.group.id);
    return {};
  }

  /**
   * The group, after checking the caller's list of its snapshots against it (INVALID_ARGUMENT on
   * a mismatch, an empty list included). A group that does not exist has no list to compare, so
   * it is undefined whatever the list (the conformance suite sends none for an unknown id).
   */
  private async checked(ctx: OpContext, id: string, snapshotIds: string[] | undefined): Promise<GroupSnapshotView | undefined> {
    if (!id) throw invalidArgument('group_snapshot_id is required');
    const view = isGroupId(id) ? await this.groups.getGroup(ctx, id) : undefined;
    if (!view) return undefined;
    if (!snapshotIds?.length) throw invalidArgument('snapshot_ids is required');
    const have = view.group.members.map((m) => m.snapshotId);
    if (!sameSet(have, snapshotIds)) {
      throw invalidArgument(`snapshot_ids do not match group snapshot ${id}: it has ${have.join(', ')}, the request lists ${snapshotIds.join(', ')}`);
    }
    return view;
  }
}
