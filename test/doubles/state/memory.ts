import { byId, groupProblem, type DeviceRecord, type GroupRecord, type GroupStore, type Mutation, type PoolRecord, type StateStore, StoreError } from '../../../src/state/types.ts';
import { applyMutation, assertStorable, jsonCopy, recordCopy } from '../../../src/state/records.ts';

/** Retries before updateDevice gives up on a record that keeps changing underneath it. */
const MAX_ATTEMPTS = 100;


/**
 * In-memory StateStore for tests. Records are copied on the way in and out, so callers
 * can neither mutate stored state nor see later changes through old references.
 * updateDevice yields between read and write, like a real store, so concurrent updates
 * really interleave and the compare-and-swap path runs.
 */
export class MemoryStore implements StateStore, GroupStore {
  readonly #devices = new Map<string, DeviceRecord>();
  readonly #groups = new Map<string, GroupRecord>();
  #pool: PoolRecord | undefined;
  #revision = 0;
  #closed = false;
  /** Conflicts still to be faked on the next updateDevice writes (see failNextWrites). */
  #fakeConflicts = 0;

  #next(): string {
    this.#revision += 1;
    return String(this.#revision);
  }
  #open(): void {
    if (this.#closed) throw new StoreError('io', 'store is closed');
  }

  /** Test helper: the next `n` updateDevice writes lose their compare-and-swap once each. */
  failNextWrites(n: number): void {
    this.#fakeConflicts = n;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    this.#open();
    const r = this.#devices.get(id);
    return r && recordCopy(r);
  }

  async listDevices(): Promise<DeviceRecord[]> {
    this.#open();
    return [...this.#devices.values()].sort(byId).map(recordCopy);
  }

  async createDevice(record: DeviceRecord): Promise<DeviceRecord> {
    this.#open();
    assertStorable('device', jsonCopy(record));
    if (this.#devices.has(record.id)) throw new StoreError('exists', `device record ${record.id} already exists`);
    const stored = { ...jsonCopy(record), revision: this.#next() };
    this.#devices.set(record.id, stored);
    return jsonCopy(stored);
  }

  async updateDevice(id: string, mutate: Mutation<DeviceRecord>): Promise<DeviceRecord> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      this.#open();
      const current = this.#devices.get(id);
      if (!current) throw new StoreError('not_found', `device record ${id} not found`);
      const readRevision = current.revision;
      const next = applyMutation(current, mutate);
      await Promise.resolve();
      if (this.#fakeConflicts > 0) {
        this.#fakeConflicts -= 1;
        continue;
      }
      const now = this.#devices.get(id);
      if (!now) throw new StoreError('not_found', `device record ${id} was deleted during the update`);
      if (now.revision !== readRevision) continue;
      const stored = { ...next, revision: this.#next() };
      this.#devices.set(id, stored);
      return jsonCopy(stored);
    }
    throw new StoreError('conflict', `device record ${id}: gave up after ${MAX_ATTEMPTS} conflicting updates`);
  }

  async deleteDevice(id: string): Promise<void> {
    this.#open();
    this.#devices.delete(id);
  }

  async getPool(): Promise<PoolRecord | undefined> {
    this.#open();
    return this.#pool && jsonCopy(this.#pool);
  }

  async updatePool(mutate: (current: PoolRecord | undefined) => PoolRecord): Promise<PoolRecord> {
    this.#open();
    const next = mutate(this.#pool && jsonCopy(this.#pool));
    assertStorable('pool', jsonCopy(next));
    this.#pool = { ...jsonCopy(next), revision: this.#next() };
    return jsonCopy(this.#pool);
  }

  async getGroup(id: string): Promise<GroupRecord | undefined> {
    this.#open();
    const g = this.#groups.get(id);
    return g && jsonCopy(g);
  }

  async listGroups(): Promise<GroupRecord[]> {
    this.#open();
    return [...this.#groups.values()].sort(byId).map((g) => jsonCopy(g));
  }

  async putGroup(record: GroupRecord): Promise<GroupRecord> {
    this.#open();
    const copy = jsonCopy(record);
    const problem = groupProblem(copy);
    if (problem) throw new TypeError(`invalid group record: ${problem}`);
    const stored = { ...copy, revision: this.#next() };
    this.#groups.set(copy.id, stored);
    return jsonCopy(stored);
  }

  async deleteGroup(id: string): Promise<void> {
    this.#open();
    this.#groups.delete(id);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
