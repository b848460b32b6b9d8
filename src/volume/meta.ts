import type { DeviceRecord } from '../state/types.ts';
import type { AccessType } from './capability.ts';

/** Keys the CSI layer keeps in DeviceRecord.meta. */
export const META = {
  name: 'csi.name',
  accessType: 'access.type',
  fsType: 'fs.type',
  sourceKind: 'source.kind',
  sourceId: 'source.id',
  /** Set on a group snapshot's members: the group's id (CSI Snapshot.group_snapshot_id). */
  groupId: 'group.id',
  /** The PersistentVolume and its claim, from external-provisioner's --extra-create-metadata parameters. */
  pvName: 'co.pv.name',
  pvcName: 'co.pvc.name',
  pvcNamespace: 'co.pvc.namespace',
} as const;

type WithMeta = Pick<DeviceRecord, 'meta'>;

/** A record made before access types were recorded is a mount volume. */
export function accessOf(rec: WithMeta): AccessType {
  return rec.meta[META.accessType] === 'block' ? 'block' : 'mount';
}

/** The CO's name for the volume or snapshot (CreateVolume's and CreateSnapshot's `name`); '' when none was kept. */
export function csiNameOf(rec: WithMeta): string {
  return rec.meta[META.name] ?? '';
}

/** The filesystem the volume was created for; '' for a block volume or none chosen. */
export function fsTypeOf(rec: WithMeta): string {
  return rec.meta[META.fsType] ?? '';
}

export function sourceOf(rec: WithMeta): { kind: string; id: string } | undefined {
  const kind = rec.meta[META.sourceKind];
  const id = rec.meta[META.sourceId];
  return kind && id ? { kind, id } : undefined;
}

/** A snapshot's meta: its CSI name, its source, and the source's access and filesystem, which a restore inherits. */
export function snapshotMeta(name: string, source: Pick<DeviceRecord, 'id' | 'meta'>): Record<string, string> {
  return {
    [META.name]: name, [META.sourceKind]: 'volume', [META.sourceId]: source.id,
    [META.accessType]: accessOf(source), [META.fsType]: fsTypeOf(source),
  };
}
