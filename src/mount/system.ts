import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { nodeDevNo } from '../system/blockdev.ts';
import type { OpContext } from '../system/context.ts';
import { CommandError, run } from '../system/exec.ts';
import { versionBelow } from '../system/version.ts';
import { parseMountinfo, toMountEntry } from './mountinfo.ts';
import { readSuperblock } from './superblock.ts';
import { type FsStats, type FsType, type MkfsOptions, type MountEntry, type Mounter, MountError } from './types.ts';

export interface SystemMounterOptions {
  /** Defaults to /proc/self/mountinfo. */
  mountinfoPath?: string;
  /** Upper bound for each command (further capped by the context deadline). */
  maxMs?: number;
  /** Run tools from this directory instead of looking them up in PATH (tests). */
  binDir?: string;
}

/** Turns anything a tool or fs call threw into a MountError, keeping errno/exit code/stderr. */
export function toMountError(err: unknown, what: string): MountError {
  if (err instanceof MountError) return err;
  if (err instanceof CommandError) {
    return new MountError(`${what}: ${err.message}`, { errno: err.errno, exitCode: err.exitCode, stderr: err.stderr, cause: err });
  }
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === 'string' ? e.code : undefined;
  return new MountError(`${what}: ${e?.message ?? String(err)}`, { errno, cause: err });
}

/** The first e2fsprogs whose mke2fs takes `-E assume_storage_prezeroed`. */
export const E2FSPROGS_PREZEROED = '1.47';

/** Whether `mke2fs -V` output (it prints to stderr) names e2fsprogs `want` or later. */
export function e2fsprogsAtLeast(out: { stdout: string; stderr: string }, want: string): boolean {
  const have = /\bmke2fs (\d+\.\d+(?:\.\d+)?)/.exec(`${out.stderr}\n${out.stdout}`)?.[1];
  return have !== undefined && !versionBelow(have, want);
}

/**
 * libmount prints its own words for the commonest mount(2) failures instead of strerror's;
 * they name the errno it got, so a failure carries the errno mount(2) would have given.
 */
const LIBMOUNT_ERRNO: ReadonlyArray<[RegExp, string]> = [
  [/wrong fs type, bad option, bad superblock/, 'EINVAL'],
  [/mount point does not exist|special device \S+ does not exist/, 'ENOENT'],
  [/mount point is not a directory/, 'ENOTDIR'],
  [/already mounted on|already mounted or mount point busy/, 'EBUSY'],
];

function withLibmountErrno(e: MountError): MountError {
  const errno = e.errno === undefined ? LIBMOUNT_ERRNO.find(([re]) => re.test(e.stderr))?.[1] : undefined;
  return errno === undefined ? e : new MountError(e.message, { errno, exitCode: e.exitCode, stderr: e.stderr, cause: e.cause });
}

/** Resolves symlinks where the path exists so it compares equal to the kernel's view. */
export async function canonical(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch {
    return abs;
  }
}

/** Mounter backed by util-linux, e2fsprogs and xfsprogs. */
export class SystemMounter implements Mounter {
  readonly #mountinfoPath: string;
  readonly #maxMs: number;
  readonly #binDir: string | undefined;
  #prezeroed: Promise<boolean> | undefined;

  constructor(opts: SystemMounterOptions = {}) {
    this.#mountinfoPath = opts.mountinfoPath ?? '/proc/self/mountinfo';
    this.#maxMs = opts.maxMs ?? 120_000;
    this.#binDir = opts.binDir;
  }

  async #run(ctx: OpContext, tool: string, args: readonly string[]): Promise<string> {
    return (await this.#runBoth(ctx, tool, args)).stdout;
  }

  async #runBoth(ctx: OpContext, tool: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
    const cmd = this.#binDir === undefined ? tool : path.join(this.#binDir, tool);
    try {
      return await run(ctx, cmd, args, { maxMs: this.#maxMs });
    } catch (err) {
      throw toMountError(err, tool);
    }
  }

  async mount(ctx: OpContext, source: string, target: string, fsType: string, options: readonly string[]): Promise<void> {
    const opt = options.length > 0 ? ['-o', options.join(',')] : [];
    try {
      await this.#run(ctx, 'mount', ['-t', fsType, ...opt, source, target]);
    } catch (err) {
      throw withLibmountErrno(err as MountError);
    }
  }

  async bindMount(ctx: OpContext, source: string, target: string, options: readonly string[]): Promise<void> {
    await this.#run(ctx, 'mount', ['--bind', source, target]);
    // The kernel ignores per-mount flags on the initial bind; they only take effect on a remount.
    const flags = options.filter((o) => o !== 'bind' && o !== 'remount' && o !== 'rw' && o !== 'defaults');
    if (flags.length === 0) return;
    try {
      await this.#run(ctx, 'mount', ['-o', ['remount', 'bind', ...flags].join(','), target]);
    } catch (err) {
      // Never leave a writable bind behind when read-only was asked for.
      await this.#run(ctx, 'umount', [target]).catch(() => undefined);
      throw err;
    }
  }

  async unmount(ctx: OpContext, target: string): Promise<void> {
    try {
      await this.#run(ctx, 'umount', [target]);
    } catch (err) {
      const e = err as MountError;
      // umount reports "not mounted" without an errno; umount(2) itself says EINVAL.
      if (e.errno === undefined && /not mounted|no mount point specified/.test(e.stderr)) {
        throw new MountError(e.message, { errno: 'EINVAL', exitCode: e.exitCode, stderr: e.stderr, cause: e.cause });
      }
      throw err;
    }
  }

  async #mountinfo(): Promise<MountEntry[]> {
    try {
      return parseMountinfo(await fsp.readFile(this.#mountinfoPath, 'utf8')).map(toMountEntry);
    } catch (err) {
      throw toMountError(err, `reading ${this.#mountinfoPath}`);
    }
  }

  async findMount(_ctx: OpContext, target: string): Promise<MountEntry | undefined> {
    const want = await canonical(target);
    const entries = await this.#mountinfo();
    // Later lines are mounted on top of earlier ones at the same point; the last one is visible.
    return entries.findLast((e) => e.target === want);
  }

  async mountsOf(_ctx: OpContext, device: string): Promise<MountEntry[]> {
    return SystemMounter.#ofDevice(await this.#mountinfo(), device);
  }

  async mountAtAndOf(_ctx: OpContext, target: string, device: string): Promise<{ top: MountEntry | undefined; ofDevice: MountEntry[] }> {
    const want = await canonical(target);
    const entries = await this.#mountinfo();
    const top = entries.findLast((e) => e.target === want);
    return { top, ofDevice: top ? await SystemMounter.#ofDevice(entries, device) : [] };
  }

  static async #ofDevice(entries: readonly MountEntry[], device: string): Promise<MountEntry[]> {
    // No block node (gone, or never one): match the source string instead.
    const majorMinor = await nodeDevNo(device);
    return majorMinor !== undefined
      ? entries.filter((e) => e.majorMinor === majorMinor)
      : entries.filter((e) => e.source === device);
  }

  async detectFs(ctx: OpContext, device: string): Promise<string | undefined> {
    // blkid exits 2 for a missing device as well as for "nothing found": tell them apart first.
    try {
      await fsp.stat(device);
    } catch (err) {
      throw toMountError(err, `blkid ${device}`);
    }
    let out: string;
    try {
      out = await this.#run(ctx, 'blkid', ['-p', '-s', 'TYPE', '-o', 'value', device]);
    } catch (err) {
      if ((err as MountError).exitCode === 2) return undefined;
      throw err;
    }
    const fsType = out.trim();
    if (fsType === '') {
      // Something was recognised (e.g. a partition table) but no filesystem: refuse to call it blank.
      throw new MountError(`blkid ${device}: signature found but no filesystem TYPE; refusing to treat the device as empty`, { exitCode: 0 });
    }
    return fsType;
  }

  async probe(_ctx: OpContext, device: string): Promise<{ fsType: FsType; sizeBytes: number } | undefined> {
    try {
      return await readSuperblock(device);
    } catch (err) {
      throw toMountError(err, `reading the superblock of ${device}`);
    }
  }

  async mkfs(ctx: OpContext, device: string, fsType: FsType, opts: MkfsOptions = {}): Promise<void> {
    const extraArgs = opts.extraArgs ?? [];
    // Options must precede the device: mkfs.ext4 reads a trailing argument as the fs size.
    switch (fsType) {
      case 'ext4': {
        const zeroed = opts.zeroed === true && await this.#ext4KnowsPrezeroed(ctx);
        const ext = zeroed ? 'nodiscard,assume_storage_prezeroed=1' : 'nodiscard,lazy_itable_init=1,lazy_journal_init=1';
        await this.#run(ctx, 'mkfs.ext4', ['-F', '-q', '-E', ext, ...extraArgs, device]);
        return;
      }
      case 'xfs':
        await this.#run(ctx, 'mkfs.xfs', ['-f', '-q', '-K', ...extraArgs, device]);
        return;
      default:
        throw new MountError(`mkfs: unsupported filesystem type ${JSON.stringify(fsType)} (supported: ext4, xfs)`, { errno: 'EINVAL' });
    }
  }

  /**
   * Whether mke2fs takes `assume_storage_prezeroed` (e2fsprogs 1.47.0 and later; an older one
   * refuses the whole -E list). Asked once; a failed asking is not remembered.
   */
  #ext4KnowsPrezeroed(ctx: OpContext): Promise<boolean> {
    this.#prezeroed ??= this.#runBoth(ctx, 'mkfs.ext4', ['-V']).then((out) => e2fsprogsAtLeast(out, E2FSPROGS_PREZEROED), () => {
      this.#prezeroed = undefined;
      return false;
    });
    return this.#prezeroed;
  }

  async growFs(ctx: OpContext, device: string, mountPoint: string, fsType: string): Promise<void> {
    switch (fsType) {
      case 'ext4':
        await this.#run(ctx, 'resize2fs', [device]);
        return;
      case 'xfs':
        // xfs grows only online, addressed by its mount point.
        await this.#run(ctx, 'xfs_growfs', [mountPoint]);
        return;
      default:
        throw new MountError(`growFs: unsupported filesystem type ${JSON.stringify(fsType)} (supported: ext4, xfs)`, { errno: 'EINVAL' });
    }
  }

  async checkFs(ctx: OpContext, device: string, fsType: string): Promise<void> {
    switch (fsType) {
      case 'ext4':
        try {
          await this.#run(ctx, 'fsck.ext4', ['-p', device]);
        } catch (err) {
          // fsck exit 1: errors were found and corrected; the filesystem is usable.
          if ((err as MountError).exitCode === 1) return;
          throw err;
        }
        return;
      case 'xfs':
        // xfs replays its log at mount time; xfs_repair on a dirty log would refuse anyway.
        return;
      default:
        throw new MountError(`checkFs: unsupported filesystem type ${JSON.stringify(fsType)} (supported: ext4, xfs)`, { errno: 'EINVAL' });
    }
  }

  async fsStats(_ctx: OpContext, p: string): Promise<FsStats> {
    try {
      const s = await fsp.statfs(p, { bigint: true });
      return {
        totalBytes: Number(s.blocks * s.bsize),
        usedBytes: Number((s.blocks - s.bfree) * s.bsize),
        availableBytes: Number(s.bavail * s.bsize),
        totalInodes: Number(s.files),
        usedInodes: Number(s.files - s.ffree),
        freeInodes: Number(s.ffree),
      };
    } catch (err) {
      throw toMountError(err, `statfs ${p}`);
    }
  }

  async blockSize(ctx: OpContext, device: string): Promise<number> {
    const out = (await this.#run(ctx, 'blockdev', ['--getsize64', device])).trim();
    if (!/^\d+$/.test(out)) throw new MountError(`blockdev --getsize64 ${device}: unexpected output ${JSON.stringify(out)}`);
    return Number(out);
  }
}
