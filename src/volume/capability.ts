import type { VolumeCapability__Output } from '../csi/generated/csi/v1/VolumeCapability.ts';
import type { AccessKind } from '../mount/ownership.ts';
import { SUPPORTED_FS, type FsType } from '../mount/types.ts';

export type AccessType = AccessKind;

export const SUPPORTED_MODES = new Set(['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER']);
export const READ_ONLY_MODES = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

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
