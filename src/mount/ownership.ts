import { realpath, stat } from 'node:fs/promises';
import type { OpContext } from '../system/context.ts';
import type { MountEntry, Mounter } from './types.ts';

/** What the kernel's mount table shows at a path, judged against one volume. */
export type MountOwner =
  | { kind: 'none' }
  | { kind: 'ours'; entry: MountEntry }
  | { kind: 'foreign'; entry: MountEntry };

/** How the volume is reached: its filesystem is mounted, or its device node is bound onto a file. */
export type AccessKind = 'mount' | 'block';

/** A mount entry as an operator would want it named in an error. */
export function describeMount(e: MountEntry): string {
  const root = e.root === '/' ? '' : `, root ${e.root}`;
  return `${e.source} (${e.fsType}, device ${e.majorMinor}${root})`;
}

function sameMount(a: MountEntry, b: MountEntry): boolean {
  return a.target === b.target && a.majorMinor === b.majorMinor && a.root === b.root;
}

/**
 * A bind of a device node shows the filesystem holding the node (devtmpfs), with the node's path
 * inside it as root. The kernel is asked twice: the root against the node's path, and, where the
 * path exists, whether what is visible there is the same block device as the volume's node.
 */
async function isDeviceBind(entry: MountEntry, device: string, path: string): Promise<boolean> {
  const real = await realpath(device).catch(() => device);
  const roots = new Set([real, device].map((p) => p.replace(/^\/dev(?=\/)/, '')));
  if (roots.has(entry.root)) return true;
  const [seen, dev] = await Promise.all([stat(path).catch(() => undefined), stat(device).catch(() => undefined)]);
  return !!seen && !!dev && seen.isBlockDevice() && dev.isBlockDevice() && seen.rdev === dev.rdev;
}

/**
 * Whose mount is visible at `path`, decided from the mount table only: ours when its source is
 * the volume's device (by major:minor, which also covers a bind of the volume's staging mount), or,
 * for block access, a bind of the volume's device node. Anything else is foreign.
 */
export async function mountOwner(ctx: OpContext, mounter: Mounter, path: string, device: string, access: AccessKind): Promise<MountOwner> {
  if (access === 'block') {
    const top = await mounter.findMount(ctx, path);
    if (!top) return { kind: 'none' };
    return (await isDeviceBind(top, device, path)) ? { kind: 'ours', entry: top } : { kind: 'foreign', entry: top };
  }
  const { top, ofDevice } = await mounter.mountAtAndOf(ctx, path, device);
  if (!top) return { kind: 'none' };
  return ofDevice.some((m) => sameMount(m, top)) ? { kind: 'ours', entry: top } : { kind: 'foreign', entry: top };
}
