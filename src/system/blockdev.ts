import { readFile, stat } from 'node:fs/promises';

/** "major:minor" of a device number as the kernel encodes st_rdev (glibc's makedev: 32-bit major and minor, each split in two). */
export function devNo(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/** "major:minor" of the block device behind a node; undefined when there is no such node or it is no block device. */
export async function nodeDevNo(node: string): Promise<string | undefined> {
  try {
    const st = await stat(node, { bigint: true });
    return st.isBlockDevice() ? devNo(st.rdev) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The size in bytes of the block device behind NODE as the kernel keeps it (SYSFS/dev/block/M:m/size,
 * in 512-byte sectors whatever the device's logical block size: what BLKGETSIZE64 answers), with
 * no process spawned. A node that is missing or no block device is an error with its errno code
 * (ENOENT, ENOTBLK); undefined only when sysfs cannot tell (not mounted in this container), so
 * the caller can ask another way.
 */
export async function blockDeviceBytes(node: string, sysfs = '/sys'): Promise<number | undefined> {
  const st = await stat(node, { bigint: true });
  if (!st.isBlockDevice()) throw Object.assign(new Error(`${node} is not a block device`), { code: 'ENOTBLK' });
  let text: string;
  try {
    text = await readFile(`${sysfs}/dev/block/${devNo(st.rdev)}/size`, 'utf8');
  } catch {
    return undefined;
  }
  const sectors = Number(text.trim());
  return /^\d+$/.test(text.trim()) && Number.isSafeInteger(sectors * 512) ? sectors * 512 : undefined;
}
