import type { OpContext } from '../system/context.ts';
import type { DeviceKind, DeviceRecord, GroupRecord } from '../state/types.ts';

export interface NewVolume {
  id: string;
  kind: DeviceKind;
  sizeBytes: number;
  meta: Record<string, string>;
  /** Store id of the snapshot or volume to copy (as a thin snapshot: no data is copied). */
  origin?: string;
  /** Topology segments the volume must be reachable from, best first. */
  preferred?: Array<Record<string, string>>;
  requisite?: Array<Record<string, string>>;
}

export interface Condition { abnormal: boolean; message: string }

/**
 * Where the controller's volumes live. Standalone: the local pool. Kubernetes: custom
 * resources that node agents turn into devices. The controller never knows which.
 */
export interface VolumeBackend {
  /** Topology key this backend places volumes by. */
  readonly topologyKey: string;
  get(ctx: OpContext, id: string): Promise<DeviceRecord | undefined>;
  list(ctx: OpContext): Promise<DeviceRecord[]>;
  /** RESOURCE_EXHAUSTED when no pool in reach can hold it. */
  create(ctx: OpContext, spec: NewVolume): Promise<DeviceRecord>;
  /** Idempotent; FAILED_PRECONDITION while the device is in use. */
  remove(ctx: OpContext, id: string): Promise<void>;
  expand(ctx: OpContext, id: string, sizeBytes: number): Promise<DeviceRecord>;
  /** Bytes a new volume could get in the given segment (all segments when omitted). */
  capacity(ctx: OpContext, segments?: Record<string, string>): Promise<number>;
  condition(ctx: OpContext, rec: DeviceRecord): Promise<Condition>;
  /** Node a record lives on, as a topology segment. */
  topologyOf(rec: DeviceRecord): Record<string, string>;
}

export interface NewGroupSnapshot {
  id: string;
  members: Array<{ snapshotId: string; sourceId: string; meta: Record<string, string> }>;
  meta: Record<string, string>;
}

/** A group snapshot and its member snapshots' records. */
export interface GroupSnapshotView { group: GroupRecord; members: DeviceRecord[] }

/**
 * Group snapshots: one instant across volumes of one pool. A backend that offers them is
 * served as the CSI GroupController; one that does not leaves the service out.
 */
export interface GroupBackend {
  getGroup(ctx: OpContext, id: string): Promise<GroupSnapshotView | undefined>;
  createGroup(ctx: OpContext, spec: NewGroupSnapshot): Promise<GroupSnapshotView>;
  /** Idempotent; FAILED_PRECONDITION while a member is in use. */
  removeGroup(ctx: OpContext, id: string): Promise<void>;
}
