import { createHash } from 'node:crypto';
import type { CapacityRange__Output } from '../csi/generated/csi/v1/CapacityRange.ts';
import type { VolumeCapability__Output } from '../csi/generated/csi/v1/VolumeCapability.ts';
import { invalidArgument, outOfRange } from '../errors.ts';
import { SUPPORTED_FS, type FsType } from '../mount/types.ts';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
/** Sizes are rounded up to whole MiB: filesystems and dm tables both like aligned ends. */
export const SIZE_ALIGN = MiB;
export const DEFAULT_SIZE = GiB;
/** mkfs.xfs refuses filesystems under 300 MiB. */
export const XFS_MIN = 300 * MiB;
/** Beyond this a request is a mistake, not a volume (dm-thin itself would accept more). */
export const MAX_SIZE = 256 * 1024 * GiB;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ID_RE = /^(vol|snap)-[0-9a-f]{32}$/;

export function requireField(value: unknown, field: string): void {
  if (value === undefined || value === null || value === '') throw invalidArgument(`${field} is required`);
}

export function validateName(name: string, field = 'name'): void {
  requireField(name, field);
  if (Buffer.byteLength(name) > 128 || !NAME_RE.test(name)) {
    throw invalidArgument(`${field} "${name.slice(0, 140)}" is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

/** Ids are derived from CSI names, so a retried CreateVolume lands on the same record. */
export function idFor(kind: 'vol' | 'snap', name: string): string {
  return `${kind}-${createHash('sha256').update(name).digest('hex').slice(0, 32)}`;
}

/** A group snapshot's id, from its CSI name as a snapshot's is from its name. */
export function groupIdFor(name: string): string {
  return `group-${createHash('sha256').update(name).digest('hex').slice(0, 32)}`;
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

export function checkMapSize(map: Record<string, string> | undefined, field: string): void {
  if (!map) return;
  const bytes = Object.entries(map).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (bytes > 4096) throw invalidArgument(`${field} is ${bytes} bytes; the CSI limit is 4 KiB`);
}

const align = (n: number) => Math.ceil(n / SIZE_ALIGN) * SIZE_ALIGN;

/**
 * Picks a size inside the requested range: the required size (or the minimum the content
 * needs), rounded up to whole MiB, never above the limit.
 */
export function chooseSize(range: CapacityRange__Output | null, minimum = 0): number {
  const required = Number(range?.required_bytes ?? 0);
  const limit = Number(range?.limit_bytes ?? 0);
  if (!Number.isFinite(required) || !Number.isFinite(limit) || required < 0 || limit < 0) {
    throw invalidArgument('capacity_range: required_bytes and limit_bytes must not be negative');
  }
  if (limit > 0 && required > limit) throw invalidArgument(`capacity_range: required_bytes ${required} exceeds limit_bytes ${limit}`);
  const want = Math.max(required || (limit > 0 ? Math.min(DEFAULT_SIZE, limit) : DEFAULT_SIZE), minimum);
  let size = align(want);
  // A tight limit wins over MiB alignment; dm still needs whole sectors.
  if (limit > 0 && size > limit) size = Math.ceil(want / 512) * 512;
  if (limit > 0 && size > limit) throw outOfRange(`capacity_range: the volume needs at least ${size} bytes but limit_bytes is ${limit}`);
  if (size > MAX_SIZE) throw outOfRange(`capacity_range: ${size} bytes exceeds the largest volume this driver creates (${MAX_SIZE} bytes)`);
  return size;
}

export type AccessType = 'mount' | 'block';

export const SUPPORTED_MODES = new Set(['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER']);

export interface CapabilityView { accessType: AccessType; fsType: FsType | ''; mountFlags: string[]; mode: string }

/** Why a capability is unsupported, or undefined when it is fine. */
export function capabilityProblem(cap: VolumeCapability__Output): string | undefined {
  const mode = cap.access_mode?.mode ?? 'UNKNOWN';
  if (!cap.block && !cap.mount) return 'volume_capability: access_type (mount or block) is required';
  if (!SUPPORTED_MODES.has(mode)) return `volume_capability: access mode ${mode} is not supported: thin volumes are local to one node`;
  if (cap.mount) {
    const fs = cap.mount.fs_type;
    if (fs && !(SUPPORTED_FS as readonly string[]).includes(fs)) return `volume_capability: fs_type "${fs}" is not supported (use ${SUPPORTED_FS.join(' or ')})`;
    for (const f of cap.mount.mount_flags) {
      if (!/^[A-Za-z0-9_.=:@/+-]+$/.test(f) || f.startsWith('-')) return `volume_capability: mount flag "${f}" is not valid`;
      if (['bind', 'rbind', 'remount', 'move'].includes(f)) return `volume_capability: mount flag "${f}" is not allowed`;
    }
  }
  return undefined;
}

export function viewCapability(cap: VolumeCapability__Output): CapabilityView {
  return {
    accessType: cap.block ? 'block' : 'mount',
    fsType: (cap.mount?.fs_type ?? '') as FsType | '',
    mountFlags: cap.mount?.mount_flags ?? [],
    mode: cap.access_mode?.mode ?? 'UNKNOWN',
  };
}

/** Validates a capability list for CreateVolume: non-empty, each supported, one access type. */
export function validateCapabilities(caps: VolumeCapability__Output[], field = 'volume_capabilities'): CapabilityView[] {
  if (!caps || caps.length === 0) throw invalidArgument(`${field} is required`);
  const views = caps.map((c) => {
    const problem = capabilityProblem(c);
    if (problem) throw invalidArgument(problem);
    return viewCapability(c);
  });
  if (new Set(views.map((v) => v.accessType)).size > 1) throw invalidArgument(`${field}: a volume is either block or mount, not both`);
  return views;
}
