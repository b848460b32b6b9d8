import type {
  poolHealth, thinGroupSnapshotSpec, thinGroupSnapshotStatus, thinPoolSpec, thinPoolStatus, thinSnapshotSpec,
  thinSnapshotStatus, thinVolumeSpec, thinVolumeStatus,
} from './crds.ts';
import type { Infer } from './schema.ts';

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
/** On the ThinPool, a size ("300Gi"): the node agent grows a file pool's data file to it, online. */
export const GROW_TO_ANNOTATION = `${GROUP}/grow-to`;
export const LEASE_NAME = 'dmthin-csi-controller';
/** Namespace of the Events about our cluster-scoped objects (as kubectl describe looks for them). */
export const EVENT_NAMESPACE = 'default';

/** The device states (DEVICE_STATES, src/state/types.ts) plus Pending: the CR exists, no agent has claimed it yet. */
export type CrState = NonNullable<DeviceStatus['state']>;

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

// Spec and status types follow from the CRD schemas of ./crds.ts, the source of deploy/crds/.
/** Device fields shared by ThinVolume and ThinSnapshot status. */
export interface DeviceStatus extends Infer<typeof thinVolumeStatus> {}
/** fsType is copied from the record's meta, a string (checked against SUPPORTED_FS at CreateVolume). */
export interface ThinVolumeSpec extends Omit<Infer<typeof thinVolumeSpec>, 'fsType'> { fsType?: string }
export interface ThinSnapshotSpec extends Infer<typeof thinSnapshotSpec> {}

/** A custom resource of ours: the envelope the schemas of ./crds.ts leave to the apiserver. */
interface Cr<K extends string, Spec, Status> { apiVersion: string; kind: K; metadata: ObjectMeta; spec: Spec; status?: Status }

export interface ThinVolume extends Cr<'ThinVolume', ThinVolumeSpec, DeviceStatus> {}
export interface ThinSnapshot extends Cr<'ThinSnapshot', ThinSnapshotSpec, Infer<typeof thinSnapshotStatus>> {}
export type DeviceCr = ThinVolume | ThinSnapshot;

export interface ThinGroupSnapshotSpec extends Infer<typeof thinGroupSnapshotSpec> {}
export interface ThinGroupSnapshot extends Cr<'ThinGroupSnapshot', ThinGroupSnapshotSpec, Infer<typeof thinGroupSnapshotStatus>> {}

export function isUnclaimedGroup(cr: ThinGroupSnapshot): boolean {
  const s = cr.status?.state;
  return s === undefined || s === 'Pending';
}

export type PoolHealthName = Infer<typeof poolHealth>;

export interface ThinPoolCr extends Cr<'ThinPool', Infer<typeof thinPoolSpec>, Infer<typeof thinPoolStatus>> {}

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
