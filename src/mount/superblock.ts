import { open } from 'node:fs/promises';

/** What a filesystem superblock says about itself. */
export interface Superblock { fsType: 'ext4' | 'xfs'; sizeBytes: number }

const EXT_MAGIC = 0xef53;
const EXT_INCOMPAT_64BIT = 0x80;

/**
 * Reads ext2/3/4 and xfs superblocks directly: one 4 KiB read instead of a blkid process,
 * and the filesystem's own size, so staging can tell whether it must grow it.
 */
export function parseSuperblock(buf: Buffer): Superblock | undefined {
  if (buf.length >= 8 + 8 && buf.toString('latin1', 0, 4) === 'XFSB') {
    const blockSize = buf.readUInt32BE(4);
    const dblocks = Number(buf.readBigUInt64BE(8));
    return { fsType: 'xfs', sizeBytes: blockSize * dblocks };
  }
  const sb = 1024;
  if (buf.length >= sb + 0x160 && buf.readUInt16LE(sb + 56) === EXT_MAGIC) {
    const blockSize = 1024 << buf.readUInt32LE(sb + 24);
    const lo = buf.readUInt32LE(sb + 4);
    const incompat = buf.readUInt32LE(sb + 0x60);
    const hi = incompat & EXT_INCOMPAT_64BIT ? buf.readUInt32LE(sb + 0x150) : 0;
    return { fsType: 'ext4', sizeBytes: (hi * 2 ** 32 + lo) * blockSize };
  }
  return undefined;
}

export async function readSuperblock(device: string): Promise<Superblock | undefined> {
  const fh = await open(device, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseSuperblock(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
