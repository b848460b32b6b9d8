import type { OpContext } from '../system/context.ts';

export type FsType = 'ext4' | 'xfs';
export const SUPPORTED_FS: readonly FsType[] = ['ext4', 'xfs'];

/** One line of /proc/self/mountinfo, the fields the driver decides on. */
export interface MountEntry {
  /** Mount point, unescaped. */
  target: string;
  /** Source device or path as the kernel reports it (for bind mounts: the device). */
  source: string;
  fsType: string;
  /** Per-mount options (ro/rw, nosuid, ...). */
  options: string[];
  /** major:minor of the mounted device. */
  majorMinor: string;
  /** Path inside the source filesystem that is mounted ('/' for a whole filesystem). */
  root: string;
}

export interface FsStats {
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
  totalInodes: number;
  usedInodes: number;
  freeInodes: number;
}

export class MountError extends Error {
  readonly errno: string | undefined;
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(message: string, detail: { errno?: string; exitCode?: number; stderr?: string; cause?: unknown } = {}) {
    super(message, { cause: detail.cause });
    this.name = 'MountError';
    this.errno = detail.errno;
    this.exitCode = detail.exitCode;
    this.stderr = detail.stderr ?? '';
  }
}

export interface MkfsOptions {
  /**
   * The device reads zeros everywhere (a thin device with no block provisioned yet). ext4 then
   * marks its inode tables as zeroed. Otherwise the kernel zeroes them after the first mount
   * (lazy init), which on a thin device writes real zeros and provisions pool space for them:
   * ~160 MiB for a 10 GiB volume.
   */
  zeroed?: boolean;
  /** More arguments for the mkfs tool, placed before the device. */
  extraArgs?: readonly string[];
}

/**
 * Filesystem and mount operations on block devices and paths. The real implementation
 * runs util-linux / e2fsprogs / xfsprogs; the fake keeps a mount table in memory.
 * Failures are MountError.
 */
export interface Mounter {
  /** Mount a filesystem. `options` are passed as one -o list; none means defaults. */
  mount(ctx: OpContext, source: string, target: string, fsType: string, options: readonly string[]): Promise<void>;
  /** Bind-mount a file or directory; remounts read-only when asked (a bind ignores ro on the first call). */
  bindMount(ctx: OpContext, source: string, target: string, options: readonly string[]): Promise<void>;
  unmount(ctx: OpContext, target: string): Promise<void>;
  /** The mount whose mount point is exactly `target`, or undefined. */
  findMount(ctx: OpContext, target: string): Promise<MountEntry | undefined>;
  /** Every mount whose source is `device` (by major:minor when the device exists). */
  mountsOf(ctx: OpContext, device: string): Promise<MountEntry[]>;
  /**
   * findMount(target) and, only when something is mounted there, mountsOf(device), both from one
   * reading of the mount table: what deciding whose mount is at a path needs (ownership.ts).
   */
  mountAtAndOf(ctx: OpContext, target: string, device: string): Promise<{ top: MountEntry | undefined; ofDevice: MountEntry[] }>;
  /** Filesystem type found on the device (blkid probe), undefined if none. */
  detectFs(ctx: OpContext, device: string): Promise<string | undefined>;
  /**
   * The ext4/xfs filesystem on the device and its size from its own superblock
   * (src/mount/superblock.ts readSuperblock for the real one); undefined when neither is
   * found. Cheaper than detectFs, which callers use only when this finds nothing.
   */
  probe(ctx: OpContext, device: string): Promise<{ fsType: FsType; sizeBytes: number } | undefined>;
  /** mkfs without discard (thin devices are already zero); ext4 with lazy init, or with its tables marked zeroed when `zeroed`. */
  mkfs(ctx: OpContext, device: string, fsType: FsType, opts?: MkfsOptions): Promise<void>;
  /** Grow the filesystem on `device` mounted at `mountPoint` to fill the device. */
  growFs(ctx: OpContext, device: string, mountPoint: string, fsType: string): Promise<void>;
  /** Check a filesystem before its first mount after a crash (fsck -p / xfs_repair -n style); resolves when clean or repaired. */
  checkFs(ctx: OpContext, device: string, fsType: string): Promise<void>;
  fsStats(ctx: OpContext, path: string): Promise<FsStats>;
  /** Size of a block device in bytes (what BLKGETSIZE64 answers). */
  blockSize(ctx: OpContext, device: string): Promise<number>;
}

/** Loop devices for the standalone pool's backing files. */
export interface LoopDevices {
  /** The loop device already backed by `file`, if any. */
  find(ctx: OpContext, file: string): Promise<string | undefined>;
  /** Attach `file` (reusing an existing attachment) and return /dev/loopN. */
  attach(ctx: OpContext, file: string): Promise<string>;
  detach(ctx: OpContext, device: string): Promise<void>;
  /** Makes the loop device take its backing file's current size (LOOP_SET_CAPACITY, `losetup -c`). */
  refresh(ctx: OpContext, device: string): Promise<void>;
}
