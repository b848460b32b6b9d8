import { isAbsolute } from 'node:path';
import type { NodeExpandVolumeRequest__Output } from '../csi/generated/csi/v1/NodeExpandVolumeRequest.ts';
import type { NodeGetVolumeStatsRequest__Output } from '../csi/generated/csi/v1/NodeGetVolumeStatsRequest.ts';
import type { NodePublishVolumeRequest__Output } from '../csi/generated/csi/v1/NodePublishVolumeRequest.ts';
import type { NodeStageVolumeRequest__Output } from '../csi/generated/csi/v1/NodeStageVolumeRequest.ts';
import type { NodeUnpublishVolumeRequest__Output } from '../csi/generated/csi/v1/NodeUnpublishVolumeRequest.ts';
import type { NodeUnstageVolumeRequest__Output } from '../csi/generated/csi/v1/NodeUnstageVolumeRequest.ts';
import type { NodeRpcs } from '../csi/rpcs.ts';
import { invalidArgument, notFound, outOfRange } from '../errors.ts';
import { toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import { checkPath } from './paths.ts';
import { publishVolume, unpublishVolume } from './publish.ts';
import { requireOwnMount } from './guard.ts';
import { writesFail } from '../pool/health.ts';
import { accessOf } from '../volume/meta.ts';
import { knownVolume, stageVolume, unstageVolume, type StageDeps } from './stage.ts';

export interface NodeIdentity { nodeId: string; topologyKey: string }

const CAPABILITIES = ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'] as const;

/** CSI Node semantics on this node's pool and mounts. */
export class NodeService implements NodeRpcs {
  private readonly d: StageDeps;
  private readonly id: NodeIdentity;
  constructor(deps: StageDeps, id: NodeIdentity) {
    this.d = deps;
    this.id = id;
  }

  async NodeStageVolume(ctx: OpContext, req: NodeStageVolumeRequest__Output) { await stageVolume(ctx, this.d, req); return {}; }
  async NodeUnstageVolume(ctx: OpContext, req: NodeUnstageVolumeRequest__Output) { await unstageVolume(ctx, this.d, req.volume_id, req.staging_target_path); return {}; }
  async NodePublishVolume(ctx: OpContext, req: NodePublishVolumeRequest__Output) { await publishVolume(ctx, this.d, req); return {}; }
  async NodeUnpublishVolume(ctx: OpContext, req: NodeUnpublishVolumeRequest__Output) { await unpublishVolume(ctx, this.d, req.volume_id, req.target_path); return {}; }

  /**
   * Stats and expand: every required field first, then the volume, then whether it is really at
   * volume_path by the mount table. The volume is only ever mounted at absolute paths, so a
   * relative one is "not at this path" (NOT_FOUND), as COs and conformance tools expect.
   */
  private async mountedAt(ctx: OpContext, volumeId: string, volumePath: string): Promise<{ rec: DeviceRecord; path: string }> {
    if (!volumeId) throw invalidArgument('volume_id is required');
    if (!volumePath) throw invalidArgument('volume_path is required');
    if (volumePath.includes('\0') || volumePath.length > 4096) throw invalidArgument('volume_path is not a valid path');
    const path = isAbsolute(volumePath) ? checkPath(volumePath, 'volume_path') : undefined;
    const rec = await knownVolume(this.d, volumeId);
    if (path === undefined) throw notFound(`volume ${rec.id} is not at the relative path "${volumePath}"`);
    await requireOwnMount(ctx, this.d.mounter, path, this.d.devices.devicePath(rec), accessOf(rec), rec.id);
    return { rec, path };
  }

  async NodeGetVolumeStats(ctx: OpContext, req: NodeGetVolumeStatsRequest__Output) {
    const { rec, path } = await this.mountedAt(ctx, req.volume_id, req.volume_path);
    const mapped = await this.d.devices.mappedBytes(ctx, rec).catch(() => undefined);
    const condition = await this.condition(ctx, rec, mapped);
    try {
      if (accessOf(rec) === 'block') {
        const total = await this.d.mounter.blockSize(ctx, this.d.devices.devicePath(rec));
        return { usage: [{ unit: 'BYTES' as const, total, used: mapped ?? 0, available: Math.max(0, total - (mapped ?? 0)) }], volume_condition: condition };
      }
      const s = await this.d.mounter.fsStats(ctx, path);
      return {
        usage: [
          { unit: 'BYTES' as const, total: s.totalBytes, used: s.usedBytes, available: s.availableBytes },
          { unit: 'INODES' as const, total: s.totalInodes, used: s.usedInodes, available: s.freeInodes },
        ],
        volume_condition: condition,
      };
    } catch (err) {
      throw toStatus(err, `reading stats of ${path}`);
    }
  }

  private async condition(ctx: OpContext, rec: DeviceRecord, mapped: number | undefined) {
    if (rec.state === 'Faulty') return { abnormal: true, message: `device is Faulty: ${rec.error ?? ''}` };
    const health = await this.d.devices.pool.health(ctx);
    const thin = mapped === undefined ? 'device is not active' : `thin device maps ${mapped} bytes of pool ${this.d.devices.pool.name}`;
    if (writesFail(health.condition, health.dataFreeBytes)) return { abnormal: true, message: `${thin}; ${health.reasons.join('; ')}` };
    return { abnormal: mapped === undefined, message: thin };
  }

  async NodeExpandVolume(ctx: OpContext, req: NodeExpandVolumeRequest__Output) {
    let { rec } = await this.mountedAt(ctx, req.volume_id, req.volume_path);
    const required = Number(req.capacity_range?.required_bytes ?? 0);
    const limit = Number(req.capacity_range?.limit_bytes ?? 0);
    if (limit > 0 && limit < rec.sizeBytes) throw outOfRange(`capacity_range: limit_bytes ${limit} is smaller than the volume (${rec.sizeBytes} bytes)`);
    if (required > rec.sizeBytes) throw outOfRange(`capacity_range: required_bytes ${required} exceeds the volume's size ${rec.sizeBytes}; expand it with ControllerExpandVolume first`);
    await this.d.devices.applySize(ctx, rec);
    rec = await knownVolume(this.d, rec.id);
    if (accessOf(rec) === 'block') return { capacity_bytes: rec.sizeBytes };
    const device = this.d.devices.devicePath(rec);
    try {
      const mounts = await this.d.mounter.mountsOf(ctx, device);
      const fs = await this.d.mounter.probe(ctx, device);
      if (fs && fs.sizeBytes < rec.sizeBytes) {
        // Growing writes new metadata blocks: on a full pool they would wait until no_space_timeout.
        await this.d.devices.pool.ensureNoFreeze(ctx, `growing the filesystem of ${rec.id}`);
        await this.d.mounter.growFs(ctx, device, mounts[0]?.target ?? req.volume_path, fs.fsType);
      }
    } catch (err) {
      throw toStatus(err, `growing the filesystem of ${rec.id}`);
    }
    return { capacity_bytes: rec.sizeBytes };
  }

  NodeGetInfo() {
    return { node_id: this.id.nodeId, max_volumes_per_node: 0, accessible_topology: { segments: { [this.id.topologyKey]: this.id.nodeId } } };
  }

  NodeGetCapabilities() { return { capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }; }
}
