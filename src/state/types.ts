/** The device states of containerd's devmapper snapshotter, kept verbatim so operators recognise them. */
export const DEVICE_STATES = [
  'Unknown', 'Creating', 'Created', 'Activating', 'Activated', 'Suspending', 'Suspended',
  'Resuming', 'Resumed', 'Deactivating', 'Deactivated', 'Removing', 'Removed', 'Faulty',
] as const;
export type DeviceState = (typeof DEVICE_STATES)[number];

export type DeviceKind = 'volume' | 'snapshot';

/**
 * One thin device and what the CSI layer knows about it. Written before any dm message
 * (intent) and after it (confirmation), so a restart can tell what was in flight.
 */
export interface DeviceRecord {
  /** Store key: the CSI volume or snapshot id. */
  id: string;
  /** device-mapper name of the thin device when active. */
  dmName: string;
  kind: DeviceKind;
  /** 24-bit thin device id inside the pool. */
  deviceId: number;
  sizeBytes: number;
  /** Store id of the device this one was snapshotted from, if any. */
  origin?: string;
  state: DeviceState;
  /** Last error, with the state in which it happened. */
  error?: string;
  /** For a Faulty device: the state it was in when it failed, so a repair knows what to finish. */
  faultyFrom?: DeviceState;
  /** Owned by the CSI layer (name, access type, fs type, source...); opaque to the pool layer. */
  meta: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  /** Opaque store revision used for compare-and-swap; set by the store. */
  revision?: string;
}

export interface PoolRecord {
  name: string;
  /** Last transaction id this driver confirmed it set on the pool. */
  transactionId: number;
  /**
   * Set before this driver reserves a metadata snapshot and cleared after it releases it, so
   * a snapshot left held by a crash is known to be ours and released at the next reconcile.
   */
  metadataSnapHeld?: boolean;
  updatedAt: string;
  revision?: string;
}

export type GroupState = 'Creating' | 'Ready' | 'Removing';

/**
 * A group snapshot: one instant across several volumes of this pool. Written (Creating) before
 * any member record and before the first suspend, and Ready only once every member's
 * create_snap returned, so a restart knows whether the whole group exists (Ready: finish the
 * members' bookkeeping) or must be undone (Creating, Removing: delete every member, then it).
 */
export interface GroupRecord {
  /** Store key: the CSI group snapshot id. */
  id: string;
  state: GroupState;
  /** Member snapshot id and the volume it is of, in the order they were taken. */
  members: Array<{ snapshotId: string; sourceId: string }>;
  /** Owned by the CSI layer (the request's name); opaque to the pool layer. */
  meta: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  revision?: string;
}

/** Durable group records; the stores that can keep them implement it beside StateStore. */
export interface GroupStore {
  getGroup(id: string): Promise<GroupRecord | undefined>;
  listGroups(): Promise<GroupRecord[]>;
  /** Creates or replaces the record: a group's record has one writer, the RPC holding its lock. */
  putGroup(record: GroupRecord): Promise<GroupRecord>;
  /** Idempotent. */
  deleteGroup(id: string): Promise<void>;
}

export function groupProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object';
  const r = x as Record<string, unknown>;
  if (typeof r.id !== 'string' || r.id === '') return 'id must be a non-empty string';
  if (r.state !== 'Creating' && r.state !== 'Ready' && r.state !== 'Removing') return `state ${JSON.stringify(r.state)} is not a group state`;
  if (!Array.isArray(r.members) || !r.members.every((m: unknown) => typeof (m as { snapshotId?: unknown })?.snapshotId === 'string'
    && typeof (m as { sourceId?: unknown }).sourceId === 'string')) return 'members must list {snapshotId, sourceId} strings';
  if (typeof r.meta !== 'object' || r.meta === null || !Object.values(r.meta).every((v) => typeof v === 'string')) return 'meta must map strings to strings';
  if (typeof r.createdAt !== 'string' || typeof r.updatedAt !== 'string') return 'createdAt and updatedAt must be strings';
  return undefined;
}

export class StoreError extends Error {
  readonly kind: 'not_found' | 'conflict' | 'exists' | 'io';
  constructor(kind: StoreError['kind'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.kind = kind;
  }
}

export type Mutation<T> = (current: T) => T | void;

/**
 * Durable records of one node's pool. Implementations: an embedded file store
 * (standalone), an in-memory store (tests), custom resources (Kubernetes mode).
 * Callers never assume they are the only process reading the records.
 */
export interface StateStore {
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(): Promise<DeviceRecord[]>;
  /** Fails with StoreError 'exists' if a record with this id is already stored. */
  createDevice(record: DeviceRecord): Promise<DeviceRecord>;
  /**
   * Read-modify-write with compare-and-swap; the mutation may run more than once on
   * conflict. Fails with StoreError 'not_found' when there is no such record.
   */
  updateDevice(id: string, mutate: Mutation<DeviceRecord>): Promise<DeviceRecord>;
  /** Idempotent: deleting a missing record succeeds. */
  deleteDevice(id: string): Promise<void>;
  getPool(): Promise<PoolRecord | undefined>;
  updatePool(mutate: (current: PoolRecord | undefined) => PoolRecord): Promise<PoolRecord>;
  close(): Promise<void>;
}

/** Orders records (or anything with an id) by id, in code-unit order: the stores' listing order and the pagination tokens' order. */
export function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
