import type { DeviceState, GroupState } from '../state/types.ts';

export const GROUP = 'dmthin.csi.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const PLURAL = { pool: 'thinpools', volume: 'thinvolumes', snapshot: 'thinsnapshots', group: 'thingroupsnapshots' } as const;
export const KIND = { pool: 'ThinPool', volume: 'ThinVolume', snapshot: 'ThinSnapshot', group: 'ThinGroupSnapshot' } as const;
/** Every ThinVolume/ThinSnapshot carries it, so an agent can watch only its own node's objects. */
export const NODE_LABEL = `${GROUP}/node`;
/** Held while a device may exist in a pool: the CR outlives its device, never the other way round. */
export const FINALIZER = `${GROUP}/device`;
/** An operator sets it (any value) to ask the agent to retry a Faulty device now. */
export const RETRY_ANNOTATION = `${GROUP}/retry`;
/**
 * On a deleting ThinVolume/ThinSnapshot whose device cannot be deleted: drop the finalizer anyway.
 * The device stays in the pool (reported as an orphan) for the operator to deal with.
 */
export const FORCE_CLEANUP_ANNOTATION = `${GROUP}/force-cleanup`;
/** On the ThinPool, value "true": the agent deletes thin devices no CR owns (never without it). */
export const REMOVE_ORPHANS_ANNOTATION = `${GROUP}/remove-orphans`;
export const LEASE_NAME = 'dmthin-csi-controller';
/** Namespace of the Events about our cluster-scoped objects (as kubectl describe looks for them). */
export const EVENT_NAMESPACE = 'default';

/** The seed's device states plus Pending: the CR exists, no agent has claimed it yet. */
export type CrState = DeviceState | 'Pending';

export interface ObjectMeta {
  name: string;
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

/** Device fields shared by ThinVolume and ThinSnapshot status. */
export interface DeviceStatus {
  state?: CrState;
  deviceId?: number;
  sizeBytes?: number;
  /** gRPC code name of the last failure (RESOURCE_EXHAUSTED, INTERNAL...). */
  code?: string;
  message?: string;
  /** For Faulty: the state it failed in, so a repair knows what to finish. */
  faultyFrom?: DeviceState;
  updatedAt?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface ThinVolumeSpec {
  nodeName: string;
  sizeBytes: number;
  accessType: 'mount' | 'block';
  fsType?: string;
  csiName: string;
  source?: { kind: 'snapshot' | 'volume'; name: string };
}

/** `group`: the ThinGroupSnapshot this snapshot is a member of; the group's agent work makes and deletes it. */
export interface ThinSnapshotSpec { nodeName: string; sourceVolume: string; csiName: string; group?: string }

export interface ThinVolume { apiVersion: string; kind: 'ThinVolume'; metadata: ObjectMeta; spec: ThinVolumeSpec; status?: DeviceStatus }
export interface ThinSnapshot { apiVersion: string; kind: 'ThinSnapshot'; metadata: ObjectMeta; spec: ThinSnapshotSpec; status?: DeviceStatus & { readyToUse?: boolean } }
export type DeviceCr = ThinVolume | ThinSnapshot;

/** Members are ThinSnapshots named in `members`, in the order of `sourceVolumes`, each owned by the group. */
export interface ThinGroupSnapshotSpec { nodeName: string; csiName: string; sourceVolumes: string[]; members: string[] }
export interface ThinGroupSnapshot {
  apiVersion: string;
  kind: 'ThinGroupSnapshot';
  metadata: ObjectMeta;
  spec: ThinGroupSnapshotSpec;
  status?: { state?: GroupState | 'Pending'; readyToUse?: boolean; code?: string; message?: string; updatedAt?: string };
}

export function isUnclaimedGroup(cr: ThinGroupSnapshot): boolean {
  const s = cr.status?.state;
  return s === undefined || s === 'Pending';
}

export type PoolHealthName = 'ok' | 'low_space' | 'out_of_space' | 'read_only' | 'needs_check' | 'failed';

export interface ThinPoolCr {
  apiVersion: string;
  kind: 'ThinPool';
  metadata: ObjectMeta;
  spec: { nodeName: string; poolName: string; source?: string; dataDevice?: string; metadataDevice?: string };
  status?: {
    poolName?: string;
    transactionId?: number;
    health?: PoolHealthName;
    reasons?: string[];
    dataTotalBytes?: number;
    dataUsedBytes?: number;
    metadataTotalBytes?: number;
    metadataUsedBytes?: number;
    /** Bytes a new volume may claim: free data space x the agent's overprovision ratio (0 when not writable). */
    capacityBytes?: number;
    devices?: number;
    orphans?: number;
    /** The agent holds (or, after a crash, held) a metadata snapshot of the pool. */
    metadataSnapshotHeld?: boolean;
    lastReconcileTime?: string;
    conditions?: Condition[];
  };
}

/** The resource a CSI id lives in: ids are vol-…, snap-… or group-… (src/volume/ids.ts). */
export function pluralOf(id: string): typeof PLURAL.volume | typeof PLURAL.snapshot {
  return id.startsWith('snap-') ? PLURAL.snapshot : PLURAL.volume;
}

export function objectPluralOf(id: string): typeof PLURAL.volume | typeof PLURAL.snapshot | typeof PLURAL.group {
  return id.startsWith('group-') ? PLURAL.group : pluralOf(id);
}

export function dmNameOf(uid: string): string { return `dmthin-${uid}`; }

/** Unclaimed: no agent has made (or is making) a device for it. */
export function isUnclaimed(cr: DeviceCr): boolean {
  const s = cr.status?.state;
  return s === undefined || s === 'Pending';
}
