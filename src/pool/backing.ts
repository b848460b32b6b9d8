import { promises as fsp } from 'node:fs';
import { fallocateAsync, SysError } from '../system/ffi.ts';
import type { OpContext } from '../system/context.ts';
import { failedPrecondition } from '../errors.ts';

/**
 * The filesystem under a file-backed pool: its sparse data file takes space as the pool writes,
 * so what the pool can still take is bounded by what that filesystem can still give the file
 * (issue 24: a node with less room on /var than its pool's nominal size advertised the full size,
 * filled the filesystem and lost the pool to needs_check). Behind an interface so the fake can
 * model a small filesystem.
 */
export interface BackingFs {
  /** The file behind a loop block device ("major:minor" or a /dev path); undefined when it is no loop device. */
  loopFile(dev: string): Promise<string | undefined>;
  /** Bytes unprivileged writers may still take on the filesystem holding `path` (statfs f_bavail x f_bsize). */
  availableBytes(path: string): Promise<number>;
  /** The file's length and the bytes the filesystem has allocated to it. */
  usage(path: string): Promise<{ lengthBytes: number; allocatedBytes: number }>;
  /** Allocates every byte of the file's length (fallocate(2) mode 0: holes only, data kept). */
  allocate(ctx: OpContext, path: string): Promise<void>;
}

/** One reading of a pool's backing files. */
export interface BackingReading {
  dataFile: string;
  metadataFile?: string;
  /** Bytes the data file may still grow by: min(the filesystem's available bytes, its length - what it has). */
  growBytes: number;
  fsAvailableBytes: number;
  fileBytes: number;
  fileAllocatedBytes: number;
  /** Bytes of the metadata file's length with no blocks allocated; 0 when it is fully allocated. */
  metadataUnallocatedBytes: number;
}

/** The files of a pool made of files, as configured (a loop device's own record of its file may name another mount namespace's path). */
export interface BackingFiles { data: string; metadata: string }

/**
 * Reads the backing files of a pool: the configured ones, else those behind its devices (as
 * the pool table names them) when they are loop devices; undefined for a pool on block devices.
 */
export async function readBacking(fs: BackingFs, dataDev: string, metadataDev?: string, files?: BackingFiles): Promise<BackingReading | undefined> {
  const dataFile = files?.data ?? await fs.loopFile(dataDev);
  if (dataFile === undefined) return undefined;
  const metadataFile = files?.metadata ?? (metadataDev === undefined ? undefined : await fs.loopFile(metadataDev));
  const [data, fsAvailableBytes, meta] = await Promise.all([
    fs.usage(dataFile), fs.availableBytes(dataFile), metadataFile === undefined ? undefined : fs.usage(metadataFile),
  ]);
  const unbacked = Math.max(0, data.lengthBytes - data.allocatedBytes);
  return {
    dataFile, ...(metadataFile === undefined ? {} : { metadataFile }),
    growBytes: Math.min(fsAvailableBytes, unbacked), fsAvailableBytes,
    fileBytes: data.lengthBytes, fileAllocatedBytes: data.allocatedBytes,
    metadataUnallocatedBytes: meta ? Math.max(0, meta.lengthBytes - meta.allocatedBytes) : 0,
  };
}

/**
 * Data bytes the pool can still take: its own free space, bounded by what its data file can still
 * get from the filesystem. Pool blocks already in use but not yet written through (a partly
 * written block, with skip_block_zeroing) will take file space too, so they are set against the
 * file's room; blocks the file holds that the pool freed are not counted as reusable, since the
 * pool may hand out other blocks first.
 */
export function backedFreeBytes(poolFreeBytes: number, poolUsedBytes: number, b: BackingReading | undefined): number {
  if (!b) return poolFreeBytes;
  const owed = Math.max(0, poolUsedBytes - b.fileAllocatedBytes);
  return Math.max(0, Math.min(poolFreeBytes, b.growBytes - owed));
}

/**
 * Why the node's filesystem cannot hold the configured file pool, or undefined when it can: the
 * data file could not reach its full length. Capacity already advertises only what the
 * filesystem holds; this is the warning (ThinPool condition, Event, doctor, start log).
 */
export function backingShortfall(b: BackingReading | undefined): string | undefined {
  if (!b) return undefined;
  const missing = b.fileBytes - b.fileAllocatedBytes;
  if (b.fsAvailableBytes >= missing) return undefined;
  return `the filesystem under ${b.dataFile} has ${b.fsAvailableBytes} bytes available, but the pool's sparse data file (${b.fileBytes} bytes) may still grow by ${missing}: capacity is limited to what the filesystem holds; free space there or configure a smaller pool`;
}

const ENOENT = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT';

/** The kernel's loop attributes: /sys/dev/block/MAJ:MIN/loop/backing_file exists only for a loop device. */
async function loopFile(dev: string): Promise<string | undefined> {
  let devNo = dev;
  if (!/^\d+:\d+$/.test(dev)) {
    const st = await fsp.stat(dev).catch((e: unknown) => { if (ENOENT(e)) return undefined; throw e; });
    if (!st?.isBlockDevice()) return undefined;
    // glibc's major()/minor() for the values a loop device has.
    devNo = `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((Math.floor(st.rdev / 4096) & 0xfff00))}`;
  }
  const text = await fsp.readFile(`/sys/dev/block/${devNo}/loop/backing_file`, 'utf8').catch((e: unknown) => {
    if (ENOENT(e)) return undefined;
    throw e;
  });
  const file = text?.trim();
  return file ? file : undefined;
}

/** The real filesystem: statfs(2), stat(2) and fallocate(2) through the FFI, off the event loop. */
export const realBackingFs: BackingFs = {
  loopFile,
  async availableBytes(path) {
    const s = await fsp.statfs(path);
    return s.bavail * s.bsize;
  },
  async usage(path) {
    const s = await fsp.stat(path);
    return { lengthBytes: s.size, allocatedBytes: s.blocks * 512 };
  },
  async allocate(ctx, path) {
    const fh = await fsp.open(path, 'r+');
    let running: Promise<void> | undefined;
    try {
      const { size } = await fh.stat();
      if (size > 0) await fallocateAsync(ctx, fh.fd, 0, size, `fallocate ${path}`, 60_000);
    } catch (err) {
      running = err instanceof SysError ? err.settled : undefined;
      throw err;
    } finally {
      // A call past its deadline still uses the descriptor: closed now, its number could be reused.
      if (running) void running.finally(() => fh.close()); else await fh.close();
    }
  },
};

/**
 * Allocates a file pool's metadata file in full, so no metadata write can meet ENOSPC (a failed
 * metadata write makes the kernel fail the whole pool). Made: a filesystem that cannot hold it
 * refuses the pool. Adopted: the pool is serving, so the failure is reported (the pool counts as
 * low on space while the file has holes, see assessPool) and the start goes on.
 */
export async function allocateMetadataFile(ctx: OpContext, fs: BackingFs, file: string, made: boolean, warn: (msg: string, f: Record<string, unknown>) => void): Promise<void> {
  try {
    await fs.allocate(ctx, file);
  } catch (err) {
    const errno = err instanceof SysError ? err.errno : undefined;
    const why = errno === 'ENOSPC'
      ? `the filesystem under ${file} has no room to allocate the pool's metadata file in full`
      : `could not allocate the pool's metadata file ${file} in full: ${String(err)}`;
    if (made && errno === 'ENOSPC') {
      await fsp.rm(file, { force: true }); // so the next start makes it afresh, and refuses again if still no room
      throw failedPrecondition(`${why}; free space there or configure a smaller --loop-metadata-size`);
    }
    warn(why, { file, errno });
  }
}
