import { META } from '../volume/meta.ts';
import type { DeviceRecord, DeviceState, GroupRecord } from '../state/types.ts';
import type { Condition, DeviceCr, DeviceStatus, ThinGroupSnapshot, ThinSnapshot, ThinVolume } from './types.ts';
import { dmNameOf, isUnclaimed, NODE_LABEL } from './types.ts';

/** meta key carrying the node a record lives on (controller side: topologyOf needs it). */
export const NODE_META = 'kube.node';

const CLAIM_KEYS = [['pvName', META.pvName], ['pvcName', META.pvcName], ['pvcNamespace', META.pvcNamespace]] as const;

/** A ThinVolume's spec.claim from the record's PV and PVC meta; nothing when the CO passed none. */
export function claimOf(rec: Pick<DeviceRecord, 'meta'>): Pick<ThinVolume['spec'], 'claim'> {
  const claim = Object.fromEntries(CLAIM_KEYS.filter(([, k]) => rec.meta[k]).map(([f, k]) => [f, rec.meta[k]!]));
  return Object.keys(claim).length > 0 ? { claim } : {};
}

/** CSI-layer meta derived from the spec: the CR spec is the one source of truth for it. */
function metaOf(cr: DeviceCr): Record<string, string> {
  const node = cr.spec.nodeName ?? cr.metadata.labels?.[NODE_LABEL] ?? '';
  if (cr.kind === 'ThinSnapshot') {
    const group: Record<string, string> = cr.spec.group ? { [META.groupId]: cr.spec.group } : {};
    return { [META.name]: cr.spec.csiName, [META.sourceKind]: 'volume', [META.sourceId]: cr.spec.sourceVolume, [NODE_META]: node, ...group };
  }
  const s = cr.spec;
  return {
    [META.name]: s.csiName, [META.accessType]: s.accessType ?? 'mount', [META.fsType]: s.fsType ?? '',
    ...(s.source ? { [META.sourceKind]: s.source.kind, [META.sourceId]: s.source.name } : {}),
    ...Object.fromEntries(CLAIM_KEYS.filter(([f]) => s.claim?.[f]).map(([f, k]) => [k, s.claim![f]!])),
    [NODE_META]: node,
  };
}

export function originOf(cr: DeviceCr): string | undefined {
  return cr.kind === 'ThinSnapshot' ? cr.spec.sourceVolume : cr.spec.source?.name;
}

/**
 * The record a claimed CR stands for. Unclaimed CRs map to state Creating with no device
 * id (-1 is never stored back): callers that care check isUnclaimed first.
 */
export function toRecord(cr: DeviceCr): DeviceRecord {
  const st: DeviceStatus = cr.status ?? {};
  const created = cr.metadata.creationTimestamp ?? new Date(0).toISOString();
  const rec: DeviceRecord = {
    id: cr.metadata.name,
    dmName: dmNameOf(cr.metadata.uid ?? cr.metadata.name),
    kind: cr.kind === 'ThinSnapshot' ? 'snapshot' : 'volume',
    deviceId: st.deviceId ?? 0,
    // Unclaimed: what was asked for; claimed: what the device has.
    sizeBytes: (isUnclaimed(cr) ? undefined : st.sizeBytes) ?? (cr.kind === 'ThinVolume' ? cr.spec.sizeBytes : 0),
    state: st.state === undefined || st.state === 'Pending' ? 'Creating' : st.state,
    meta: metaOf(cr),
    createdAt: created,
    updatedAt: st.updatedAt ?? created,
    revision: cr.metadata.resourceVersion,
  };
  const origin = originOf(cr);
  if (origin) rec.origin = origin;
  if (st.faultyFrom) rec.faultyFrom = st.faultyFrom;
  if (st.state === 'Faulty' && st.message) rec.error = st.message;
  return rec;
}

const READY: ReadonlySet<DeviceState> = new Set(['Created', 'Activating', 'Activated', 'Suspending', 'Suspended', 'Resuming', 'Resumed', 'Deactivating', 'Deactivated']);

/** The status a record is written back as; fields the store does not own (conditions) are kept. */
export function toStatus(cr: DeviceCr, rec: DeviceRecord): DeviceStatus & { readyToUse?: boolean } {
  const prev = cr.status ?? {};
  const next: DeviceStatus & { readyToUse?: boolean } = {
    ...prev,
    state: rec.state,
    deviceId: rec.deviceId,
    sizeBytes: rec.sizeBytes,
    updatedAt: rec.updatedAt,
    observedGeneration: cr.metadata.generation,
  };
  for (const k of ['faultyFrom', 'code', 'message'] as const) delete next[k];
  if (rec.faultyFrom) next.faultyFrom = rec.faultyFrom;
  if (rec.state === 'Faulty') {
    next.code = prev.code ?? 'INTERNAL';
    next.message = rec.error ?? prev.message ?? '';
  }
  if (cr.kind === 'ThinSnapshot') next.readyToUse = READY.has(rec.state);
  next.conditions = readyCondition(prev.conditions ?? [], rec);
  return next;
}

/** Ready=True while the device is usable; lastTransitionTime moves only when the status flips. */
function readyCondition(prev: Condition[], rec: DeviceRecord): Condition[] {
  const status = READY.has(rec.state) ? 'True' : 'False';
  const old = prev.find((c) => c.type === 'Ready');
  const ready: Condition = {
    type: 'Ready', status, reason: rec.state,
    message: rec.state === 'Faulty' ? (rec.error ?? 'device is Faulty') : `device is ${rec.state}`,
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : new Date().toISOString(),
  };
  return [...prev.filter((c) => c.type !== 'Ready'), ready];
}

/** The group record a ThinGroupSnapshot stands for; an unclaimed one (no agent work yet) is Creating. */
export function toGroupRecord(cr: ThinGroupSnapshot): GroupRecord {
  const created = cr.metadata.creationTimestamp ?? new Date(0).toISOString();
  const st = cr.status?.state;
  return {
    id: cr.metadata.name,
    state: st === undefined || st === 'Pending' ? 'Creating' : st,
    members: cr.spec.sourceVolumes.map((sourceId, i) => ({ snapshotId: cr.spec.members[i] ?? '', sourceId })),
    meta: { [META.name]: cr.spec.csiName },
    createdAt: created,
    updatedAt: cr.status?.updatedAt ?? created,
    revision: cr.metadata.resourceVersion,
  };
}

export type { ThinSnapshot, ThinVolume };
