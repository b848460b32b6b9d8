import { close, fsync, open, rename, rm, write } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

// The callback API, not fs/promises' FileHandle: a record write is eight calls, the store's writes
// are a sizeable share of the driver's main thread under concurrent creates, and the callbacks cost
// a quarter to a third less CPU than FileHandle's.
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

/** The calls HeldDirs makes; unit tests count them. */
export interface DirCalls {
  open(dir: string): Promise<number>;
  fsync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
}

const DIR_CALLS: DirCalls = { open: (dir) => openP(dir, 'r'), fsync: fsyncP, close: closeP };

/**
 * Directory fsyncs through a descriptor opened once per directory and kept until close():
 * fsync(2) of a directory makes durable whatever was renamed or unlinked in it before the call,
 * whichever descriptor names it, so the open and close around each fsync were two of a record
 * write's eight thread-pool round trips for nothing. A failed fsync drops its descriptor (the
 * next one is opened afresh). For a store that owns its directories while it is open, through a
 * DirSync, which runs one fsync per directory at a time (so no fsync uses a descriptor being closed).
 */
export class HeldDirs {
  readonly #calls: DirCalls;
  readonly #fds = new Map<string, Promise<number>>();

  constructor(calls: DirCalls = DIR_CALLS) {
    this.#calls = calls;
  }

  readonly sync = async (dir: string): Promise<void> => {
    let fd = this.#fds.get(dir);
    if (!fd) {
      fd = this.#calls.open(dir);
      this.#fds.set(dir, fd);
      fd.catch(() => this.#drop(dir, fd!));
    }
    const n = await fd;
    try {
      await this.#calls.fsync(n);
    } catch (err) {
      if (this.#drop(dir, fd)) await this.#calls.close(n).catch(() => undefined);
      throw err;
    }
  };

  /** Forgets `fd` if it is still the one held for `dir`; true when it was. */
  #drop(dir: string, fd: Promise<number>): boolean {
    if (this.#fds.get(dir) !== fd) return false;
    this.#fds.delete(dir);
    return true;
  }

  /** Closes every held descriptor; call only once no sync is in flight. */
  async close(): Promise<void> {
    const fds = [...this.#fds.values()];
    this.#fds.clear();
    await Promise.all(fds.map((fd) => fd.then((n) => this.#calls.close(n)).catch(() => undefined)));
  }
}

const dirSync = new DirSync();
let tempSeq = 0;

/** Crash-safe replace: temp file in the same directory, fsync, rename over, fsync the directory. */
export async function writeAtomic(target: string, data: string, syncs: DirSync = dirSync): Promise<void> {
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}${TEMP_MARK}${process.pid}-${++tempSeq}`);
  try {
    const fd = await openP(tmp, 'wx', 0o600);
    let closing: Promise<void> | undefined;
    try {
      const buf = Buffer.from(data, 'utf8');
      for (let off = 0; off < buf.length;) off += (await writeP(fd, buf, off, buf.length - off, null)).bytesWritten;
      await fsyncP(fd);
      // The content is durable once fsync returns; the close adds nothing to that (and Linux frees
      // the descriptor even when close reports an error), so it runs beside the rename.
      closing = closeP(fd).catch(() => undefined);
      await renameP(tmp, target);
    } finally {
      await (closing ?? closeP(fd));
    }
  } catch (err) {
    await rmP(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncs.after(dir);
}
