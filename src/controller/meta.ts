import type { DeviceRecord } from '../state/types.ts';
import { invalidArgument } from '../errors.ts';
import { SUPPORTED_FS } from '../mount/types.ts';

/** Keys the CSI layer keeps in DeviceRecord.meta. */
export const META = {
  name: 'csi.name',
  accessType: 'access.type',
  fsType: 'fs.type',
  sourceKind: 'source.kind',
  sourceId: 'source.id',
  /** Set on a group snapshot's members: the group's id (CSI Snapshot.group_snapshot_id). */
  groupId: 'group.id',
} as const;

/** StorageClass parameters this driver understands. Kubernetes' own keys are passed through. */
export interface Parameters { fsType: string }

const CO_PREFIXES = ['csi.storage.k8s.io/'];

export function parseParameters(params: Record<string, string> | undefined, defaultFs: string): Parameters {
  const out: Parameters = { fsType: defaultFs };
  for (const [k, v] of Object.entries(params ?? {})) {
    if (CO_PREFIXES.some((p) => k.startsWith(p))) continue;
    if (k === 'fsType' || k === 'fstype') {
      if (!(SUPPORTED_FS as readonly string[]).includes(v)) throw invalidArgument(`parameters.${k}: "${v}" is not supported (use ${SUPPORTED_FS.join(' or ')})`);
      out.fsType = v;
      continue;
    }
    throw invalidArgument(`parameters.${k} is not a parameter of this driver (known: fsType)`);
  }
  return out;
}

export function sourceOf(rec: DeviceRecord): { kind: string; id: string } | undefined {
  const kind = rec.meta[META.sourceKind];
  const id = rec.meta[META.sourceId];
  return kind && id ? { kind, id } : undefined;
}
