import { blockDeviceBytes } from '../system/blockdev.ts';
import type { OpContext } from '../system/context.ts';
import { step } from '../system/crashpoint.ts';
import { reportCall } from '../system/exec.ts';
import { mountAsync, SysError, umount2Async } from '../system/ffi.ts';
import { bindRemountFlags, MS, splitOptions } from './options.ts';
import { canonical, SystemMounter, type SystemMounterOptions, toMountError } from './system.ts';
import { MountError } from './types.ts';

/** How mount(2) and umount2(2) reach the kernel; unit tests put a kernel double here. */
export interface SyscallTransport {
  mount(ctx: OpContext, source: string | null, target: string, fsType: string | null, flags: number, data: string | null, what: string, maxMs: number): Promise<void>;
  umount2(ctx: OpContext, target: string, flags: number, what: string, maxMs: number): Promise<void>;
}

const FFI: SyscallTransport = { mount: mountAsync, umount2: umount2Async };

export interface KernelMounterOptions extends SystemMounterOptions {
  transport?: SyscallTransport;
}

/**
 * libmount's source canonicalisation: a path is resolved, except a /dev/mapper name, which it
 * keeps (it maps a resolved /dev/dm-N back to it), so the mount table names the device as given.
 */
async function canonicalSource(source: string): Promise<string> {
  return source.startsWith('/') && !source.startsWith('/dev/mapper/') ? canonical(source) : source;
}

/**
 * Mounter whose mount, bind and unmount are mount(2)/umount2(2) made in process (no `mount`
 * or `umount` process per call), each on a worker thread within the caller's deadline; the rest
 * (mkfs, growFs, fsck, the mount table, the superblock probe) is SystemMounter's. What the
 * kernel is given is what mount(8) would give it: the same flags/data split, canonical paths,
 * a bind's per-mount flags set by a remount that keeps the ones it already has.
 */
export class KernelMounter extends SystemMounter {
  readonly #transport: SyscallTransport;
  readonly #maxMs: number;

  constructor(opts: KernelMounterOptions = {}) {
    super(opts);
    this.#transport = opts.transport ?? FFI;
    this.#maxMs = opts.maxMs ?? 120_000;
  }

  /** One syscall, logged and counted as a step as the command it replaces would be; failures as MountError. */
  async #sys(words: readonly string[], call: (what: string, maxMs: number) => Promise<void>): Promise<void> {
    const what = words.join(' ');
    const started = performance.now();
    let failed = true;
    try {
      await call(what, this.#maxMs);
      failed = false;
    } catch (err) {
      if (err instanceof SysError) throw new MountError(err.message, { errno: err.errno, cause: err });
      throw toMountError(err, what);
    } finally {
      const [command = '', ...args] = words;
      reportCall({ command, args, durationMs: Math.round(performance.now() - started), exitCode: failed ? 1 : 0, failed });
      step(what);
    }
  }

  #mount(ctx: OpContext, source: string | null, target: string, fsType: string | null, flags: number, data: string | null, words: readonly string[]): Promise<void> {
    return this.#sys(['mount(2)', ...words], (what, maxMs) => this.#transport.mount(ctx, source, target, fsType, flags, data, what, maxMs));
  }

  #umount(ctx: OpContext, target: string): Promise<void> {
    return this.#sys(['umount2(2)', target], (what, maxMs) => this.#transport.umount2(ctx, target, 0, what, maxMs));
  }

  /** The propagation words, each its own call after the mount, as libmount makes them. */
  async #propagate(ctx: OpContext, target: string, propagation: readonly number[]): Promise<void> {
    for (const flags of propagation) await this.#mount(ctx, 'none', target, null, flags, null, ['--make', String(flags), target]);
  }

  override async mount(ctx: OpContext, source: string, target: string, fsType: string, options: readonly string[]): Promise<void> {
    const o = splitOptions(options);
    if (o.operations.length > 0) throw new MountError(`mount ${source} ${target}: ${o.operations.join(',')} is not a filesystem mount option`, { errno: 'EINVAL' });
    const t = await canonical(target);
    await this.#mount(ctx, await canonicalSource(source), t, fsType, o.flags, o.data === '' ? null : o.data, ['-t', fsType, '-o', options.join(','), source, t]);
    await this.#propagate(ctx, t, o.propagation);
  }

  override async bindMount(ctx: OpContext, source: string, target: string, options: readonly string[]): Promise<void> {
    const words = options.filter((o) => o !== 'bind' && o !== 'remount' && o !== 'rw' && o !== 'defaults');
    const wanted = splitOptions(words);
    if (wanted.operations.length > 0) throw new MountError(`mount --bind ${source} ${target}: ${wanted.operations.join(',')} is not allowed here`, { errno: 'EINVAL' });
    const s = await canonical(source);
    const t = await canonical(target);
    await this.#mount(ctx, s, t, null, MS.BIND, null, ['--bind', s, t]);
    // The kernel ignores per-mount flags on the initial bind; they only take effect on a remount.
    if (words.length === 0) return;
    try {
      const current = await this.findMount(ctx, t);
      if (!current) throw new MountError(`mount --bind ${s} ${t}: the new bind is not in the mount table`, { errno: 'ENOENT' });
      await this.#mount(ctx, null, t, null, bindRemountFlags(current.options, words), null, ['-o', ['remount', 'bind', ...words].join(','), t]);
      await this.#propagate(ctx, t, wanted.propagation);
    } catch (err) {
      // Never leave a writable bind behind when read-only was asked for.
      await this.#umount(ctx, t).catch(() => undefined);
      throw err;
    }
  }

  /** umount2(target, 0): "not mounted" is the kernel's own EINVAL, a missing path ENOENT. */
  override async unmount(ctx: OpContext, target: string): Promise<void> {
    await this.#umount(ctx, await canonical(target));
  }

  /** The kernel's size of the device from sysfs (no `blockdev` process); the command only where sysfs cannot tell. */
  override async blockSize(ctx: OpContext, device: string): Promise<number> {
    let bytes: number | undefined;
    try {
      bytes = await blockDeviceBytes(device);
    } catch (err) {
      throw toMountError(err, `size of ${device}`);
    }
    return bytes ?? super.blockSize(ctx, device);
  }
}
