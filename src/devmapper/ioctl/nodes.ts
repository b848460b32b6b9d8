import { chown, lstat, mkdir, readlink, stat, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { devNo } from '../../system/blockdev.ts';
import { sleep } from '../../system/delay.ts';
import { mknodBlock, SysError } from '../../system/ffi.ts';

/**
 * /dev/mapper/NAME the way libdevmapper keeps it. Without udev the library is the only one to
 * make the node: a block node (0600, root:disk) after a resume, gone after a remove. With udev,
 * udev's rules make it (a symlink to ../dm-N) on the change event of the resume; the library
 * only waits for it, and makes it itself if udev never does (libdevmapper's fallback). Only a
 * node that is this device's (its number) or one left dangling by it is ever removed.
 */

const DISK_GID = 6;
const POLL_MS = 5;

export interface NodeOptions {
  /** Whether udev makes the nodes here. */
  udev: boolean;
  /** How long to wait for udev's node before making it ourselves. */
  udevWaitMs: number;
}

/** "major:minor" of what PATH is or leads to as a block device; undefined when nothing is there. */
async function blockAt(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path, { bigint: true });
    return st.isBlockDevice() ? devNo(st.rdev) : 'not-a-block-device';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Makes PATH the block node of major:minor unless it already leads there. */
export async function ensureNode(path: string, major: number, minor: number, opts: NodeOptions): Promise<void> {
  const want = `${major}:${minor}`;
  if (opts.udev) {
    const until = Date.now() + opts.udevWaitMs;
    for (;;) {
      if (await blockAt(path) === want) return;
      if (Date.now() >= until) break;
      await sleep(POLL_MS);
    }
  }
  const found = await blockAt(path);
  if (found === want) return;
  // A node of another device number under our name is what a crash between a remove and the
  // node's unlink leaves: the name is ours (the kernel just gave it to this device).
  if (found !== undefined) await unlink(path);
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  try {
    await mknodBlock(path, 0o600, major, minor);
  } catch (err) {
    // udev (or a concurrent start) made it between the look and the mknod.
    if (!(err instanceof SysError && err.errno === 'EEXIST' && await blockAt(path) === want)) throw err;
  }
  await chown(path, 0, DISK_GID).catch(() => undefined);
}

/**
 * Removes PATH when it is the node of the removed device major:minor, or a symlink that led to
 * it (now dangling). Anything else under the name is not ours and stays.
 */
export async function removeNode(path: string, major: number, minor: number): Promise<void> {
  let st;
  try {
    st = await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let ours = false;
  if (st.isBlockDevice()) ours = devNo(st.rdev) === `${major}:${minor}`;
  else if (st.isSymbolicLink()) ours = await blockAt(resolve(dirname(path), await readlink(path))) === undefined;
  if (!ours) return;
  await unlink(path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
}
