import { lstat, readdir } from 'node:fs/promises';
import { failedPrecondition, notFound } from '../errors.ts';
import { type AccessKind, describeMount, mountOwner } from '../mount/ownership.ts';
import { toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { Mounter } from '../mount/types.ts';

/** What may be at a path the node service is about to mount onto: nothing, or an empty placeholder. */
export type Placeholder = 'absent' | 'empty-dir' | 'empty-file';

/**
 * Refuses to cover data: a mount onto a non-empty directory or a file with content would hide
 * it from the node, so only an absent path or an empty directory / file (what a kubelet hands
 * over) is accepted. A symlink is refused too: the mount would land wherever it points.
 */
export async function placeholderAt(p: string, field: string): Promise<Placeholder> {
  let st;
  try {
    st = await lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'absent';
    if (code === 'ENOTDIR') throw failedPrecondition(`${field} ${p}: a component of its parent is not a directory`);
    throw toStatus(err, `inspecting ${field} ${p}`);
  }
  if (st.isSymbolicLink()) throw failedPrecondition(`${field} ${p} is a symbolic link; refusing to mount where it points`);
  if (st.isDirectory()) {
    const entries = await readdir(p).catch((err: unknown) => { throw toStatus(err, `listing ${field} ${p}`); });
    if (entries.length > 0) throw failedPrecondition(`${field} ${p} is a directory holding ${entries.length} entries (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); refusing to mount over them`);
    return 'empty-dir';
  }
  if (st.isFile()) {
    if (st.size > 0) throw failedPrecondition(`${field} ${p} is a file holding ${st.size} bytes; refusing to mount over it`);
    return 'empty-file';
  }
  throw failedPrecondition(`${field} ${p} is neither a directory nor a regular file; refusing to mount over it`);
}

/** Whether the volume is mounted (or, for block, bound) at `p`, or else NOT_FOUND. */
export async function requireOwnMount(ctx: OpContext, mounter: Mounter, p: string, device: string, access: AccessKind, volumeId: string): Promise<void> {
  const owner = await mountOwner(ctx, mounter, p, device, access).catch((err: unknown) => { throw toStatus(err, `reading the mount table for ${p}`); });
  if (owner.kind === 'ours') return;
  const what = owner.kind === 'foreign' ? `; ${describeMount(owner.entry)} is mounted there` : '';
  throw notFound(`volume ${volumeId} is not ${access === 'block' ? 'published' : 'mounted'} at ${p}${what}`);
}

/**
 * Unmounts the volume's own mounts stacked at `p`, top first. The first mount that is not the
 * volume's stops it: left exactly as it is and answered FAILED_PRECONDITION naming it.
 * True when anything was unmounted.
 */
export async function unmountOwn(ctx: OpContext, mounter: Mounter, p: string, device: string, access: AccessKind, field: string): Promise<boolean> {
  let any = false;
  try {
    for (let i = 0; i < 8; i++) {
      const owner = await mountOwner(ctx, mounter, p, device, access);
      if (owner.kind === 'none') return any;
      if (owner.kind === 'foreign') throw failedPrecondition(`${field} ${p} holds ${describeMount(owner.entry)}, which is not this volume's; left mounted`);
      await mounter.unmount(ctx, p);
      any = true;
    }
  } catch (err) {
    throw toStatus(err, `unmounting ${p}`);
  }
  return any;
}
