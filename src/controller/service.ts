import type { ControllerGetCapabilitiesResponse } from '../csi/generated/csi/v1/ControllerGetCapabilitiesResponse.ts';
import type { ControllerGetVolumeRequest__Output } from '../csi/generated/csi/v1/ControllerGetVolumeRequest.ts';
import type { ControllerExpandVolumeRequest__Output } from '../csi/generated/csi/v1/ControllerExpandVolumeRequest.ts';
import type { CreateSnapshotRequest__Output } from '../csi/generated/csi/v1/CreateSnapshotRequest.ts';
import type { CreateVolumeRequest__Output } from '../csi/generated/csi/v1/CreateVolumeRequest.ts';
import type { DeleteSnapshotRequest__Output } from '../csi/generated/csi/v1/DeleteSnapshotRequest.ts';
import type { DeleteVolumeRequest__Output } from '../csi/generated/csi/v1/DeleteVolumeRequest.ts';
import type { GetCapacityRequest__Output } from '../csi/generated/csi/v1/GetCapacityRequest.ts';
import type { GetSnapshotRequest__Output } from '../csi/generated/csi/v1/GetSnapshotRequest.ts';
import type { ListSnapshotsRequest__Output } from '../csi/generated/csi/v1/ListSnapshotsRequest.ts';
import type { ListVolumesRequest__Output } from '../csi/generated/csi/v1/ListVolumesRequest.ts';
import type { ValidateVolumeCapabilitiesRequest__Output } from '../csi/generated/csi/v1/ValidateVolumeCapabilitiesRequest.ts';
import type { ControllerRpcs } from '../csi/rpcs.ts';
import { invalidArgument, notFound } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { VolumeBackend } from './backend.ts';
import { paginate } from './paginate.ts';
import { createSnapshot, getSnapshot, listSnapshots } from './snapshots.ts';
import { capabilityProblem, viewCapability } from '../volume/capability.ts';
import { parseId } from '../volume/ids.ts';
import { accessOf, fsTypeOf, META } from '../volume/meta.ts';
import { createVolume, expandVolume, toVolume, type VolumeDefaults } from './volumes.ts';

const CAPABILITIES = [
  'CREATE_DELETE_VOLUME', 'CREATE_DELETE_SNAPSHOT', 'LIST_VOLUMES', 'LIST_SNAPSHOTS', 'GET_CAPACITY',
  'CLONE_VOLUME', 'EXPAND_VOLUME', 'SINGLE_NODE_MULTI_WRITER', 'GET_VOLUME', 'VOLUME_CONDITION', 'GET_SNAPSHOT',
] as const;

/** CSI Controller semantics: validation, idempotency and codes; the backend does the work. */
export class ControllerService implements ControllerRpcs {
  private readonly backend: VolumeBackend;
  private readonly defaults: VolumeDefaults;
  constructor(backend: VolumeBackend, defaults: VolumeDefaults) {
    this.backend = backend;
    this.defaults = defaults;
  }

  CreateVolume(ctx: OpContext, req: CreateVolumeRequest__Output) { return createVolume(ctx, this.backend, this.defaults, req); }

  async DeleteVolume(ctx: OpContext, req: DeleteVolumeRequest__Output) {
    if (!req.volume_id) throw invalidArgument('volume_id is required');
    // An id we could never have issued names nothing, and deleting nothing succeeds.
    if (parseId(req.volume_id)?.kind === 'volume') await this.backend.remove(ctx, req.volume_id);
    return {};
  }

  async ValidateVolumeCapabilities(ctx: OpContext, req: ValidateVolumeCapabilitiesRequest__Output) {
    if (!req.volume_id) throw invalidArgument('volume_id is required');
    if (!req.volume_capabilities?.length) throw invalidArgument('volume_capabilities is required');
    const rec = await this.volume(ctx, req.volume_id);
    const accessType = accessOf(rec);
    for (const cap of req.volume_capabilities) {
      const fsType = fsTypeOf(rec);
      const problem = capabilityProblem(cap) ?? (viewCapability(cap).accessType !== accessType ? `volume ${rec.id} is a ${accessType} volume` : undefined)
        ?? (cap.mount?.fs_type && fsType && cap.mount.fs_type !== fsType ? `volume ${rec.id} is ${fsType}, not ${cap.mount.fs_type}` : undefined);
      if (problem) return { confirmed: null, message: problem };
    }
    return { confirmed: { volume_context: req.volume_context, volume_capabilities: req.volume_capabilities, parameters: req.parameters, mutable_parameters: req.mutable_parameters }, message: '' };
  }

  async ListVolumes(ctx: OpContext, req: ListVolumesRequest__Output) {
    const vols = (await this.backend.list(ctx)).filter((r) => r.kind === 'volume' && r.state !== 'Creating');
    const { page, next } = paginate(vols, req.max_entries, req.starting_token, (t) => parseId(t)?.kind === 'volume');
    const entries = await Promise.all(page.map(async (r) => ({
      volume: toVolume(this.backend, r),
      status: { published_node_ids: [], volume_condition: await this.backend.condition(ctx, r) },
    })));
    return { entries, next_token: next };
  }

  async GetCapacity(ctx: OpContext, req: GetCapacityRequest__Output) {
    // external-provisioner's capacity tracking asks with an UNKNOWN access mode ("the standard makes it
    // mandatory to pass something"): that names no mode, so it limits nothing.
    const asked = (req.volume_capabilities ?? []).map((c) => (c.access_mode?.mode ?? 'UNKNOWN') === 'UNKNOWN' ? { ...c, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } } : c);
    const unsupported = asked.some((c) => capabilityProblem(c) !== undefined);
    const available = unsupported ? 0 : await this.backend.capacity(ctx, req.accessible_topology?.segments);
    return { available_capacity: available, maximum_volume_size: { value: available }, minimum_volume_size: { value: 1024 * 1024 } };
  }

  ControllerGetCapabilities(): ControllerGetCapabilitiesResponse {
    return { capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) };
  }

  CreateSnapshot(ctx: OpContext, req: CreateSnapshotRequest__Output) { return createSnapshot(ctx, this.backend, req); }

  async DeleteSnapshot(ctx: OpContext, req: DeleteSnapshotRequest__Output) {
    if (!req.snapshot_id) throw invalidArgument('snapshot_id is required');
    if (parseId(req.snapshot_id)?.kind !== 'snapshot') return {};
    const group = (await this.backend.get(ctx, req.snapshot_id))?.meta[META.groupId];
    if (group) throw invalidArgument(`snapshot ${req.snapshot_id} is a member of group snapshot ${group} and cannot be deleted alone: delete the group (DeleteVolumeGroupSnapshot)`);
    await this.backend.remove(ctx, req.snapshot_id);
    return {};
  }

  ListSnapshots(ctx: OpContext, req: ListSnapshotsRequest__Output) { return listSnapshots(ctx, this.backend, req); }

  GetSnapshot(ctx: OpContext, req: GetSnapshotRequest__Output) { return getSnapshot(ctx, this.backend, req); }

  ControllerExpandVolume(ctx: OpContext, req: ControllerExpandVolumeRequest__Output) {
    if (req.volume_capability) {
      const problem = capabilityProblem(req.volume_capability);
      if (problem) throw invalidArgument(problem);
    }
    return expandVolume(ctx, this.backend, req.volume_id, req.capacity_range);
  }

  async ControllerGetVolume(ctx: OpContext, req: ControllerGetVolumeRequest__Output) {
    if (!req.volume_id) throw invalidArgument('volume_id is required');
    const rec = await this.volume(ctx, req.volume_id);
    return { volume: toVolume(this.backend, rec), status: { published_node_ids: [], volume_condition: await this.backend.condition(ctx, rec) } };
  }

  private async volume(ctx: OpContext, id: string) {
    const rec = parseId(id)?.kind === 'volume' ? await this.backend.get(ctx, id) : undefined;
    if (!rec) throw notFound(`volume ${id} does not exist`);
    return rec;
  }
}
