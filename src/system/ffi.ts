import { type OpContext, timeLeft } from './context.ts';

/**
 * The one place koffi is loaded: the libc calls the driver makes in process (ioctl, mknod,
 * mount, umount2, fallocate), each failure a SysError with the errno's name. Calls that can block (a dm
 * suspend that flushes, a remove, a pool message, a mount replaying a journal, an unmount
 * writing back) run as koffi asynchronous calls on libuv's worker threads,
 * bounded by the caller's deadline: past it the caller gets ETIMEDOUT while the call itself
 * finishes in the background (a syscall cannot be taken back).
 */

export class SysError extends Error {
  /** errno name, e.g. 'EBUSY'; 'ETIMEDOUT' when the deadline passed first, 'ECANCELED' on a cancel. */
  readonly errno: string;
  readonly code: number;
  /**
   * On ETIMEDOUT and ECANCELED: settles when the call the kernel is still running returns. Its
   * file descriptor must stay open until then (a closed number may be reused by the next open).
   */
  readonly settled: Promise<void> | undefined;
  constructor(call: string, errno: string, code: number, detail = '', settled?: Promise<void>) {
    super(`${call}: ${errno}${detail ? ` (${detail})` : ''}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = code;
    this.settled = settled;
  }
}

interface KoffiFn {
  (...args: unknown[]): number;
  async(...args: unknown[]): void;
}

interface Libc {
  ioctl: KoffiFn;
  mknod: KoffiFn;
  mount: KoffiFn;
  umount2: KoffiFn;
  fallocate: KoffiFn;
  poll: KoffiFn;
  errno: () => number;
  names: Map<number, string>;
}

let libc: Promise<Libc> | undefined;

async function loadLibc(): Promise<Libc> {
  const koffi = (await import('koffi')).default;
  const lib = koffi.load('libc.so.6');
  const names = new Map<number, string>();
  for (const [name, code] of Object.entries(koffi.os.errno as Record<string, number>)) if (!names.has(code)) names.set(code, name);
  return {
    // ioctl(2) is variadic in glibc; declared with its one pointer argument, as the kernel reads it
    // (koffi cannot call variadic functions asynchronously).
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)') as unknown as KoffiFn,
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)') as unknown as KoffiFn,
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)') as unknown as KoffiFn,
    umount2: lib.func('int umount2(const char *target, int flags)') as unknown as KoffiFn,
    // off_t is 64-bit on the 64-bit targets the driver runs on.
    fallocate: lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as unknown as KoffiFn,
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)') as unknown as KoffiFn,
    errno: () => koffi.errno() as number,
    names,
  };
}

/** Loads koffi and libc once; rejects with the loader's error where the FFI cannot run. */
export function ffi(): Promise<Libc> {
  libc ??= loadLibc();
  return libc;
}

function failure(c: Libc, call: string): SysError {
  const code = c.errno();
  return new SysError(call, c.names.get(code) ?? `errno ${code}`, code);
}

/** ioctl(2) on the calling thread: for requests the kernel answers without waiting on I/O. */
export async function ioctlSync(fd: number, request: number, buf: Buffer, what: string): Promise<void> {
  const c = await ffi();
  if (c.ioctl(fd, request, buf) < 0) throw failure(c, what);
}

/**
 * What a call on a worker thread was given, held until it returns: koffi passes a Buffer to
 * the native side as a bare pointer and keeps only the callback alive, so without this a call
 * that outlived its caller could write into memory the collector has already reused.
 */
const pinned = new Set<unknown[]>();

/**
 * Runs one koffi asynchronous call on a worker thread and answers within the caller's deadline
 * (`maxMs` caps it): ETIMEDOUT past it, ECANCELED on the caller's abort, each carrying `settled`.
 * Either way the call runs to its end in the background, since a syscall cannot be taken back.
 */
async function bounded(ctx: OpContext, what: string, maxMs: number, args: unknown[], start: (c: Libc, done: (err: Error | null, res: number) => void) => void): Promise<void> {
  const c = await ffi();
  const ms = timeLeft(ctx, maxMs);
  let returned!: () => void;
  const settled = new Promise<void>((r) => { returned = r; });
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err); else resolve();
    };
    const onAbort = (): void => finish(new SysError(what, 'ECANCELED', 125, 'the request was cancelled', settled));
    const timer = setTimeout(() => finish(new SysError(what, 'ETIMEDOUT', 110, `no answer within ${ms} ms`, settled)), ms);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    pinned.add(args);
    // koffi sets errno for the callback from the worker thread's own errno (AsyncCall::Complete).
    start(c, (err, res) => {
      pinned.delete(args);
      returned();
      if (err) finish(err);
      else if (res < 0) finish(failure(c, what));
      else finish();
    });
  });
}

/** ioctl(2) on a worker thread, answered within the caller's deadline. */
export function ioctlAsync(ctx: OpContext, fd: number, request: number, buf: Buffer, what: string, maxMs: number): Promise<void> {
  return bounded(ctx, what, maxMs, [buf], (c, done) => c.ioctl.async(fd, request, buf, done));
}

/**
 * mount(2) on a worker thread, answered within the caller's deadline: a first mount may replay
 * a journal or recover an xfs log. `data` is the filesystem's own option string, or null.
 */
export function mountAsync(ctx: OpContext, source: string | null, target: string, fsType: string | null, flags: number, data: string | null, what: string, maxMs: number): Promise<void> {
  return bounded(ctx, what, maxMs, [source, target, fsType, data], (c, done) => c.mount.async(source, target, fsType, flags, data, done));
}

/** umount2(2) on a worker thread, answered within the caller's deadline: the last unmount writes back. */
export function umount2Async(ctx: OpContext, target: string, flags: number, what: string, maxMs: number): Promise<void> {
  return bounded(ctx, what, maxMs, [target], (c, done) => c.umount2.async(target, flags, done));
}

/**
 * fallocate(2) mode 0 on a worker thread, answered within the caller's deadline: allocating a
 * large file walks the filesystem's free-space maps. ENOSPC and EOPNOTSUPP come back as SysErrors.
 */
export function fallocateAsync(ctx: OpContext, fd: number, offset: number, length: number, what: string, maxMs: number): Promise<void> {
  return bounded(ctx, what, maxMs, [], (c, done) => c.fallocate.async(fd, 0, offset, length, done));
}

/**
 * poll(2) of one descriptor for `events` on a worker thread, for at most `timeoutMs` (the call
 * returns by itself then, so no worker is held longer): true when the descriptor is ready.
 */
export async function pollAsync(ctx: OpContext, fd: number, events: number, timeoutMs: number, what: string): Promise<boolean> {
  const fds = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
  fds.writeInt32LE(fd, 0);
  fds.writeInt16LE(events, 4);
  await bounded(ctx, what, timeoutMs + 5_000, [fds], (c, done) => c.poll.async(fds, 1, timeoutMs, done));
  return (fds.readInt16LE(6) & events) !== 0;
}

/** mknod(2) of a block device node. */
export async function mknodBlock(path: string, mode: number, major: number, minor: number): Promise<void> {
  const c = await ffi();
  const S_IFBLK = 0o060000;
  if (c.mknod(path, S_IFBLK | mode, makedev(major, minor)) < 0) throw failure(c, `mknod ${path}`);
}

/** glibc's makedev: 32-bit major and minor, each split in two. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}
