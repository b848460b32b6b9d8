import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { applyMutation, assertStorable, deviceProblem, jsonCopy, poolProblem, recordCopy } from './records.ts';
import { KeyedMutex } from '../system/lock.ts';
import { step } from '../system/crashpoint.ts';
import { DirSync, fsyncDir, HeldDirs, TEMP_MARK, writeAtomic } from './durable.ts';
import { byId, groupProblem, type DeviceRecord, type GroupRecord, type GroupStore, type Mutation, type PoolRecord, type StateStore, StoreError } from './types.ts';

const DEVICES_DIR = 'devices';
const GROUPS_DIR = 'groups';
const POOL_FILE = 'pool.json';
const LOCK_FILE = 'lock';
const POOL_KEY = '\0pool';

/**
 * File name stem for an id: [a-z0-9-] stay as they are, every other UTF-8 byte becomes
 * `_xx`. Reversible, never contains '.', so it cannot collide with temp or quarantine names.
 */
export function encodeId(id: string): string {
  let out = '';
  for (const byte of Buffer.from(id, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[a-z0-9-]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  if (out === '' || out.length > 240) throw new StoreError('io', `device id ${JSON.stringify(id)} cannot be stored as a file name`);
  return out;
}

function ioError(what: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError('io', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export { writeAtomic } from './durable.ts';

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Start time of a process in clock ticks since boot (/proc/PID/stat field 22), if readable. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

/** Directories this process has open, so a second open here is refused even though our pid is alive. */
const openHere = new Set<string>();

/**
 * Whether the lock content names a live holder. The start time written next to the pid
 * tells a restarted container that reuses the old pid (often 1) from the real holder.
 */
function lockHolderAlive(content: string, dir: string): { pid?: number; alive: boolean } {
  const [pidText, start] = content.split('\n');
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return { alive: false };
  if (pid === process.pid) return { pid, alive: openHere.has(dir) };
  if (!pidAlive(pid)) return { pid, alive: false };
  const actual = startTimeOf(pid);
  return { pid, alive: !start || actual === undefined || actual === start };
}

async function acquireLock(dir: string): Promise<void> {
  const lockPath = path.join(dir, LOCK_FILE);
  const content = `${process.pid}\n${startTimeOf(process.pid) ?? ''}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(lockPath, content, { flag: 'wx', mode: 0o644 });
      await fsyncDir(dir);
      return;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw ioError(`creating ${lockPath}`, err);
    }
    const held = await fsp.readFile(lockPath, 'utf8').catch(() => '');
    const holder = lockHolderAlive(held, dir);
    if (holder.alive) {
      throw new StoreError('io', `state directory ${dir} is locked by running process ${holder.pid} (${lockPath})`);
    }
    // Stale lock of a dead process: take it over. Two processes racing for the same stale
    // lock is not fully excluded; one store per node is the deployment model.
    await fsp.rm(lockPath, { force: true });
  }
  throw new StoreError('io', `could not acquire ${lockPath}`);
}

function quarantineName(file: string): string {
  return `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
}

/**
 * The embedded store of standalone mode: one JSON file per device under DIR/devices and
 * DIR/pool.json, all loaded into memory at open. Writes reach disk before the cache, so a
 * failed write leaves both unchanged. One process at a time holds DIR/lock.
 */
export class FileStore implements StateStore, GroupStore {
  readonly dir: string;
  readonly #devices = new Map<string, DeviceRecord>();
  readonly #groups = new Map<string, GroupRecord>();
  #pool: PoolRecord | undefined;
  #revision = 0;
  readonly #problems: string[] = [];
  readonly #mutex = new KeyedMutex();
  /** The store's directories stay open for their fsyncs while it is (see HeldDirs). */
  readonly #dirs = new HeldDirs();
  readonly #syncs = new DirSync(this.#dirs.sync);
  #closed = false;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async open(dir: string): Promise<FileStore> {
    const abs = path.resolve(dir);
    try {
      await fsp.mkdir(path.join(abs, DEVICES_DIR), { recursive: true, mode: 0o700 });
      await fsp.mkdir(path.join(abs, GROUPS_DIR), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError(`creating ${abs}`, err);
    }
    await acquireLock(abs);
    openHere.add(abs);
    const store = new FileStore(abs);
    try {
      await store.#load();
    } catch (err) {
      await store.close();
      throw ioError(`loading ${abs}`, err);
    }
    return store;
  }

  /** What was wrong with the files at open (corrupt records moved aside), for logs and health. */
  problems(): string[] {
    return [...this.#problems];
  }

  #devicePath(id: string): string {
    return path.join(this.dir, DEVICES_DIR, `${encodeId(id)}.json`);
  }

  #nextRevision(): string {
    this.#revision += 1;
    return String(this.#revision);
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError('io', `store ${this.dir} is closed`);
  }

  async #load(): Promise<void> {
    await this.#removeTemps(this.dir);
    await this.#removeTemps(path.join(this.dir, DEVICES_DIR));
    const pool = await this.#readRecord(path.join(this.dir, POOL_FILE), poolProblem);
    if (pool) this.#pool = pool as PoolRecord;
    const devDir = path.join(this.dir, DEVICES_DIR);
    for (const name of (await fsp.readdir(devDir)).sort()) {
      if (!name.endsWith('.json')) continue;
      const file = path.join(devDir, name);
      const rec = await this.#readRecord(file, (x) => deviceProblem(x)
        ?? (`${encodeId((x as DeviceRecord).id)}.json` === name ? undefined : `file name does not match id ${JSON.stringify((x as DeviceRecord).id)}`));
      if (rec) this.#devices.set((rec as DeviceRecord).id, rec as DeviceRecord);
    }
    await this.#removeTemps(path.join(this.dir, GROUPS_DIR));
    for (const name of (await fsp.readdir(path.join(this.dir, GROUPS_DIR))).sort()) {
      if (!name.endsWith('.json')) continue;
      const rec = await this.#readRecord(path.join(this.dir, GROUPS_DIR, name), groupProblem);
      if (rec) this.#groups.set((rec as unknown as GroupRecord).id, rec as unknown as GroupRecord);
    }
  }

  /** Leftovers of writes interrupted by a crash; the rename never happened, so they hold nothing committed. */
  async #removeTemps(dir: string): Promise<void> {
    for (const name of await fsp.readdir(dir)) {
      if (name.includes(TEMP_MARK)) await fsp.rm(path.join(dir, name), { force: true });
    }
  }

  /** Reads and checks one record file; a bad one is moved aside (never deleted) and reported. */
  async #readRecord(file: string, problemOf: (x: unknown) => string | undefined): Promise<DeviceRecord | PoolRecord | undefined> {
    let text: string;
    try {
      // Only open reads records, before anything else runs. Synchronous reads skip fsp.readFile's
      // four thread-pool round trips per file, which made reading many records ~25x slower.
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    let problem: string | undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
      problem = problemOf(value);
    } catch (err) {
      problem = `invalid JSON (${err instanceof Error ? err.message : String(err)})`;
    }
    if (problem === undefined) {
      const rec = value as DeviceRecord | PoolRecord;
      const rev = Number(rec.revision);
      if (Number.isSafeInteger(rev) && rev > this.#revision) this.#revision = rev;
      rec.revision = Number.isSafeInteger(rev) && rev >= 0 ? String(rev) : '0';
      return rec;
    }
    const aside = quarantineName(file);
    await fsp.rename(file, aside);
    await fsyncDir(path.dirname(file));
    this.#problems.push(`${path.relative(this.dir, file)}: ${problem}; moved to ${path.relative(this.dir, aside)}`);
    return undefined;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    this.#assertOpen();
    const r = this.#devices.get(id);
    return r && recordCopy(r);
  }

  async listDevices(): Promise<DeviceRecord[]> {
    this.#assertOpen();
    return [...this.#devices.values()].sort(byId).map(recordCopy);
  }

  async #persistDevice(next: DeviceRecord): Promise<DeviceRecord> {
    const stored = { ...next, revision: this.#nextRevision() };
    try {
      await writeAtomic(this.#devicePath(stored.id), `${JSON.stringify(stored, null, 2)}\n`, this.#syncs);
    } catch (err) {
      throw ioError(`writing device record ${stored.id}`, err);
    }
    this.#devices.set(stored.id, stored);
    step(`store: device ${stored.id} ${stored.state}`);
    return recordCopy(stored);
  }

  // Writes check for close() when called, not when their turn comes: a write issued
  // before close() still completes, and close() waits for it.
  async createDevice(record: DeviceRecord): Promise<DeviceRecord> {
    const copy = jsonCopy(record);
    assertStorable('device', copy);
    this.#assertOpen();
    return this.#mutex.run(copy.id, async () => {
      if (this.#devices.has(copy.id)) throw new StoreError('exists', `device record ${copy.id} already exists`);
      return this.#persistDevice(copy);
    });
  }

  /** Updates of one record are serialised here, so the mutation runs once and never loses a write. */
  async updateDevice(id: string, mutate: Mutation<DeviceRecord>): Promise<DeviceRecord> {
    this.#assertOpen();
    return this.#mutex.run(id, async () => {
      const current = this.#devices.get(id);
      if (!current) throw new StoreError('not_found', `device record ${id} not found`);
      return this.#persistDevice(applyMutation(current, mutate));
    });
  }

  async deleteDevice(id: string): Promise<void> {
    this.#assertOpen();
    return this.#mutex.run(id, async () => {
      const file = this.#devicePath(id);
      try {
        await fsp.unlink(file);
        await this.#syncs.after(path.dirname(file));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw ioError(`deleting device record ${id}`, err);
      }
      this.#devices.delete(id);
      step(`store: device ${id} deleted`);
    });
  }

  async getGroup(id: string): Promise<GroupRecord | undefined> {
    this.#assertOpen();
    const g = this.#groups.get(id);
    return g && jsonCopy(g);
  }

  async listGroups(): Promise<GroupRecord[]> {
    this.#assertOpen();
    return [...this.#groups.values()].sort(byId).map((g) => jsonCopy(g));
  }

  async putGroup(record: GroupRecord): Promise<GroupRecord> {
    const copy = jsonCopy(record);
    const problem = groupProblem(copy);
    if (problem) throw new TypeError(`invalid group record: ${problem}`);
    this.#assertOpen();
    return this.#mutex.run(`\0group/${copy.id}`, async () => {
      const stored = { ...copy, revision: this.#nextRevision() };
      try {
        await writeAtomic(path.join(this.dir, GROUPS_DIR, `${encodeId(copy.id)}.json`), `${JSON.stringify(stored, null, 2)}\n`, this.#syncs);
      } catch (err) {
        throw ioError(`writing group record ${copy.id}`, err);
      }
      this.#groups.set(copy.id, stored);
      step(`store: group ${copy.id} ${copy.state}`);
      return jsonCopy(stored);
    });
  }

  async deleteGroup(id: string): Promise<void> {
    this.#assertOpen();
    return this.#mutex.run(`\0group/${id}`, async () => {
      const file = path.join(this.dir, GROUPS_DIR, `${encodeId(id)}.json`);
      try {
        await fsp.unlink(file);
        await this.#syncs.after(path.dirname(file));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw ioError(`deleting group record ${id}`, err);
      }
      this.#groups.delete(id);
      step(`store: group ${id} deleted`);
    });
  }

  async getPool(): Promise<PoolRecord | undefined> {
    this.#assertOpen();
    return this.#pool && jsonCopy(this.#pool);
  }

  async updatePool(mutate: (current: PoolRecord | undefined) => PoolRecord): Promise<PoolRecord> {
    this.#assertOpen();
    return this.#mutex.run(POOL_KEY, async () => {
      const next = jsonCopy(mutate(this.#pool && jsonCopy(this.#pool)));
      assertStorable('pool', next);
      const stored = { ...next, revision: this.#nextRevision() };
      try {
        await writeAtomic(path.join(this.dir, POOL_FILE), `${JSON.stringify(stored, null, 2)}\n`, this.#syncs);
      } catch (err) {
        throw ioError('writing pool record', err);
      }
      this.#pool = stored;
      return jsonCopy(stored);
    });
  }

  /** Waits for writes in flight, then releases the lock (only if it is still ours). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#mutex.idle();
    await this.#dirs.close();
    const lockPath = path.join(this.dir, LOCK_FILE);
    const held = await fsp.readFile(lockPath, 'utf8').catch(() => '');
    if (Number(held.split('\n')[0]) === process.pid) await fsp.rm(lockPath, { force: true });
    openHere.delete(this.dir);
  }
}
