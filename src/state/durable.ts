import { close, fsync, open, rename, rm, write } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

// The callback API, not fs/promises' FileHandle: a record write is eight calls, the store's writes
// were 15% of the driver's main thread at 32 concurrent creates in the emulated bench guest (a CPU
// profile), and the callbacks cost a quarter to a third less CPU than FileHandle's (host, tmpfs).
const openP = promisify(open);
const writeP = promisify(write) as (fd: number, buf: Buffer, offset: number, length: number, position: null) => Promise<{ bytesWritten: number }>;
const fsyncP = promisify(fsync);
const closeP = promisify(close);
const renameP = promisify(rename);
const rmP = promisify(rm);

/** In the name of every temp file: what open() removes as a write a crash interrupted. */
export const TEMP_MARK = '.tmp-';

/** fsync(2) of a directory: makes the renames and unlinks done in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await openP(dir, 'r');
  try {
    await fsyncP(fd);
  } finally {
    await closeP(fd);
  }
}

/**
 * Group commit of one directory's fsync: a caller is answered by the first fsync that *starts*
 * after its call, and every caller that arrives while that one is still waiting to start shares it.
 * One started earlier may have missed the caller's rename, so it never counts. Concurrent record
 * writes (one file each) thus pay for one directory fsync between them, not one each.
 */
export class DirSync {
  readonly #sync: (dir: string) => Promise<void>;
  readonly #running = new Map<string, Promise<void>>();
  readonly #next = new Map<string, Promise<void>>();

  constructor(sync: (dir: string) => Promise<void> = fsyncDir) {
    this.#sync = sync;
  }

  after(dir: string): Promise<void> {
    const waiting = this.#next.get(dir);
    if (waiting) return waiting;
    const mine = this.#syncAfter(dir, this.#running.get(dir));
    this.#next.set(dir, mine);
    return mine;
  }

  async #syncAfter(dir: string, before: Promise<void> | undefined): Promise<void> {
    await Promise.resolve(before).catch(() => undefined); // always yields: after() has set #next
    const mine = this.#next.get(dir)!; // callers only join it while it waits, so it is still ours
    this.#next.delete(dir); // from here on, a new caller needs the fsync after this one
    this.#running.set(dir, mine);
    try {
      await this.#sync(dir);
    } finally {
      if (this.#running.get(dir) === mine) this.#running.delete(dir);
    }
  }
}

const dirSync = new DirSync();
let tempSeq = 0;

/** Makes the renames and unlinks done in `dir` so far durable, sharing the fsync with concurrent callers. */
export function syncDir(dir: string): Promise<void> {
  return dirSync.after(dir);
}

/** Crash-safe replace: temp file in the same directory, fsync, rename over, fsync the directory. */
export async function writeAtomic(target: string, data: string, syncs: DirSync = dirSync): Promise<void> {
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}${TEMP_MARK}${process.pid}-${++tempSeq}`);
  try {
    const fd = await openP(tmp, 'wx', 0o600);
    try {
      const buf = Buffer.from(data, 'utf8');
      for (let off = 0; off < buf.length;) off += (await writeP(fd, buf, off, buf.length - off, null)).bytesWritten;
      await fsyncP(fd);
    } finally {
      await closeP(fd);
    }
    await renameP(tmp, target);
  } catch (err) {
    await rmP(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncs.after(dir);
}
