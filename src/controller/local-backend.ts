import { resourceExhausted } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import type { Devices } from '../pool/devices.ts';
import type { GroupSnapshots } from '../pool/group.ts';
import type { Condition, GroupBackend, GroupSnapshotView, NewGroupSnapshot, NewVolume, VolumeBackend } from './backend.ts';
import { dmNameFor } from '../volume/ids.ts';
import { writesFail } from '../pool/health.ts';

/** The standalone backend: one node, one pool, in this process. */
export class LocalBackend implements VolumeBackend {
  readonly topologyKey: string;
  private readonly devices: Devices;
  private readonly nodeId: string;

  constructor(devices: Devices, nodeId: string, topologyKey: string) {
    this.devices = devices;
    this.nodeId = nodeId;
    this.topologyKey = topologyKey;
  }

  get(_ctx: OpContext, id: string) { return this.devices.find(id); }
  list(_ctx: OpContext) { return this.devices.list(); }

  private reachable(segments: Record<string, string>): boolean {
    const node = segments[this.topologyKey];
    return node === undefined || node === this.nodeId;
  }

  async create(ctx: OpContext, spec: NewVolume): Promise<DeviceRecord> {
    const wanted = [...(spec.preferred ?? []), ...(spec.requisite ?? [])];
    if (wanted.length > 0 && !wanted.some((s) => this.reachable(s))) {
      throw resourceExhausted(`node ${this.nodeId} is not in the requested topology; this driver only provisions on ${this.topologyKey}=${this.nodeId}`);
    }
    const roomBytes = spec.kind === 'volume' ? (spec.origin ? 0 : spec.sizeBytes) : undefined;
    return this.devices.create(ctx, { ...spec, dmName: dmNameFor(spec.id), roomBytes });
  }

  remove(ctx: OpContext, id: string) { return this.devices.remove(ctx, id); }
  expand(ctx: OpContext, id: string, sizeBytes: number) { return this.devices.resize(ctx, id, sizeBytes); }

  async capacity(ctx: OpContext, segments?: Record<string, string>): Promise<number> {
    if (segments && !this.reachable(segments)) return 0;
    return this.devices.pool.capacity(ctx);
  }

  async condition(ctx: OpContext, rec: DeviceRecord): Promise<Condition> {
    if (rec.state === 'Faulty') return { abnormal: true, message: `device is Faulty: ${rec.error ?? 'unknown error'}` };
    const h = await this.devices.pool.health(ctx);
    if (writesFail(h.condition, h.dataFreeBytes)) {
      return { abnormal: true, message: h.reasons.join('; ') };
    }
    return { abnormal: false, message: `device is ${rec.state}` };
  }

  topologyOf(_rec: DeviceRecord): Record<string, string> { return { [this.topologyKey]: this.nodeId }; }
}

/** Group snapshots of the local pool. */
export class LocalGroupBackend implements GroupBackend {
  private readonly gs: GroupSnapshots;
  constructor(gs: GroupSnapshots) { this.gs = gs; }

  getGroup(_ctx: OpContext, id: string): Promise<GroupSnapshotView | undefined> { return this.gs.view(id); }

  createGroup(ctx: OpContext, spec: NewGroupSnapshot): Promise<GroupSnapshotView> {
    return this.gs.create(ctx, { ...spec, members: spec.members.map((m) => ({ ...m, dmName: dmNameFor(m.snapshotId) })) });
  }

  removeGroup(ctx: OpContext, id: string): Promise<void> { return this.gs.remove(ctx, id); }
}
