import type { BackingFs } from '../../../src/pool/backing.ts';
import { SysError } from '../../../src/system/ffi.ts';
import type { OpContext } from '../../../src/system/context.ts';

interface FakeFile { length: number; allocated: number }

/**
 * A small filesystem holding sparse files, and the loop devices over them: what statfs, stat and
 * fallocate would answer. Every byte a file is given comes out of the filesystem's free bytes;
 * a write that would go past them fails as ENOSPC, as the kernel's would.
 */
export class FakeBackingFs implements BackingFs {
  /** Bytes still free on the filesystem (statfs f_bavail x f_bsize). */
  free: number;
  readonly files = new Map<string, FakeFile>();
  /** Loop device (as a pool table names it) → its backing file. */
  readonly loops = new Map<string, string>();
  allocateCalls: string[] = [];

  constructor(freeBytes: number) { this.free = freeBytes; }

  /** A sparse file of `length` bytes behind the loop device `dev`. */
  addFile(path: string, length: number, dev?: string): void {
    this.files.set(path, { length, allocated: 0 });
    if (dev !== undefined) this.loops.set(dev, path);
  }

  /** Data written into the file's holes: it takes filesystem space, or fails as the kernel would. */
  write(path: string, bytes: number): void {
    const f = this.file(path);
    const take = Math.min(bytes, f.length - f.allocated);
    if (take > this.free) throw new SysError(`write ${path}`, 'ENOSPC', 28);
    f.allocated += take;
    this.free -= take;
  }

  /** Something else on the filesystem takes (or, negative, frees) space. */
  consume(bytes: number): void { this.free = Math.max(0, this.free - bytes); }

  private file(path: string): FakeFile {
    const f = this.files.get(path);
    if (!f) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return f;
  }

  async loopFile(dev: string): Promise<string | undefined> { return this.loops.get(dev); }
  async availableBytes(path: string): Promise<number> {
    this.file(path);
    return this.free;
  }
  async usage(path: string): Promise<{ lengthBytes: number; allocatedBytes: number }> {
    const f = this.file(path);
    return { lengthBytes: f.length, allocatedBytes: f.allocated };
  }
  async allocate(_ctx: OpContext, path: string): Promise<void> {
    this.allocateCalls.push(path);
    const f = this.file(path);
    // fallocate(2) on ENOSPC may keep part of what it got; the model keeps nothing new.
    if (f.length - f.allocated > this.free) throw new SysError(`fallocate ${path}`, 'ENOSPC', 28);
    this.free -= f.length - f.allocated;
    f.allocated = f.length;
  }
}
