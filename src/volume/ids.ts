import { createHash } from 'node:crypto';

const ID_RE = /^(vol|snap)-[0-9a-f]{32}$/;

const digest = (name: string) => createHash('sha256').update(name).digest('hex').slice(0, 32);

/** Ids are derived from CSI names, so a retried CreateVolume lands on the same record. */
export function idFor(kind: 'vol' | 'snap', name: string): string {
  return `${kind}-${digest(name)}`;
}

/** A group snapshot's id, from its CSI name as a snapshot's is from its name. */
export function groupIdFor(name: string): string {
  return `group-${digest(name)}`;
}

export function isGroupId(id: string): boolean { return /^group-[0-9a-f]{32}$/.test(id); }

/** A group member's snapshot id: ':' cannot occur in a CSI name, so no single snapshot ever gets it. */
export function memberIdFor(groupName: string, sourceVolumeId: string): string {
  return idFor('snap', `group:${groupName}:${sourceVolumeId}`);
}

/** undefined when `id` cannot be one of ours (callers turn that into NOT_FOUND or success). */
export function parseId(id: string): { kind: 'volume' | 'snapshot' } | undefined {
  if (!ID_RE.test(id)) return undefined;
  return { kind: id.startsWith('vol-') ? 'volume' : 'snapshot' };
}

export function dmNameFor(id: string): string { return `dmthin-${id}`; }
