import { isDmError, SECTOR, type DmDeviceInfo, type DmErrorKind } from '../devmapper/types.ts';
import { aborted, failedPrecondition, notFound } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import { Semaphore } from '../system/lock.ts';
import type { DeviceKind, DeviceRecord, DeviceState } from '../state/types.ts';
import { toStatus } from '../status.ts';
import { suspendForSnapshot } from './late-suspend.ts';
import { BUSY_RETRY, retry, SUSPEND_RETRY } from './retry.ts';
import type { ThinPool } from './thinpool.ts';
import { transition, USABLE } from './transition.ts';

export interface NewDevice {
  id: string;
  dmName: string;
  kind: DeviceKind;
  sizeBytes: number;
  meta: Record<string, string>;
  /** Store id of the device to snapshot; omitted for a fresh thin device. */
  origin?: string;
  /** Data space the new device may claim, checked against the pool first; omitted: no such check (a snapshot). */
  roomBytes?: number;
}

/** Failures after which the kernel certainly did not create the device, so no delete is owed. */
const CERTAINLY_NOT_CREATED: readonly DmErrorKind[] = ['exists', 'no_space', 'invalid', 'no_data', 'unsupported', 'busy'];
const MAX_ID_COLLISIONS = 8;
/** States in which the record says no table maps the device (a crash mid-activation is Activating). */
const RECORDED_INACTIVE: ReadonlySet<DeviceState> = new Set<DeviceState>(['Created', 'Deactivated']);

const now = () => new Date().toISOString();

/**
 * The lifecycle of thin devices in one pool, after PoolDevice of containerd's devmapper
 * snapshotter (github.com/containerd/containerd/snapshots/devmapper): intent recorded before
 * every kernel call and a rollback for every half-made device.
 */
export class Devices {
  readonly pool: ThinPool;
  /**
   * Creates and deletes in progress at once. Their pool messages queue on one mutex anyway; a
   * burst of 32 all spawning commands and writing records beside it only slowed the one holding
   * it: without a limit, 32 concurrent creates ran slower than the same creates one at a time
   * (bench/results/RESULTS-2026-11-23-run3.md).
   */
  private readonly admission: Semaphore;
  constructor(pool: ThinPool, opts: { maxInFlight?: number } = {}) {
    this.pool = pool;
    this.admission = new Semaphore(opts.maxInFlight ?? 4);
  }

  private get store() { return this.pool.deps.store; }
  private get dm() { return this.pool.deps.dm; }
  private get log() { return this.pool.deps.log; }

  async get(id: string): Promise<DeviceRecord> {
    const rec = await this.find(id);
    if (!rec) throw notFound(`no device ${id}`);
    return rec;
  }

  /** The record, or undefined: for callers that word their own NOT_FOUND. */
  find(id: string): Promise<DeviceRecord | undefined> { return this.store.getDevice(id); }

  list(): Promise<DeviceRecord[]> { return this.store.listDevices(); }

  /** The kernel's view of a record's dm device (open count, live table); undefined when there is none. */
  info(ctx: OpContext, rec: Pick<DeviceRecord, 'dmName'>): Promise<DmDeviceInfo | undefined> { return this.dm.info(ctx, rec.dmName); }

  isLive(ctx: OpContext, rec: Pick<DeviceRecord, 'dmName'>): Promise<boolean> { return this.dm.isLive(ctx, rec.dmName); }

  /**
   * Deletes a thin device no record owns (reconcile's orphan; its table first when it is live)
   * and frees its id. The caller is the pool's only message sender, so nothing interleaves.
   */
  async removeOrphan(ctx: OpContext, orphan: { dmName?: string; deviceId: number }): Promise<void> {
    if (orphan.dmName) await this.dm.remove(ctx, orphan.dmName, { retry: true });
    await this.pool.send(ctx, `delete ${orphan.deviceId}`);
    this.pool.releaseId(orphan.deviceId);
  }

  table(rec: Pick<DeviceRecord, 'sizeBytes' | 'deviceId'>): string {
    return `0 ${Math.ceil(rec.sizeBytes / SECTOR)} thin ${this.pool.devNo} ${rec.deviceId}`;
  }

  devicePath(rec: DeviceRecord): string { return this.dm.devicePath(rec.dmName); }

  /** Creates a thin device, or a snapshot of `spec.origin`; never activates it. */
  create(ctx: OpContext, spec: NewDevice): Promise<DeviceRecord> {
    return this.admission.run(() => this.createNow(ctx, spec));
  }

  private async createNow(ctx: OpContext, spec: NewDevice): Promise<DeviceRecord> {
    const origin = spec.origin === undefined ? undefined : await this.get(spec.origin);
    if (origin && !USABLE.has(origin.state)) {
      throw failedPrecondition(`source ${origin.id} is ${origin.state}${origin.error ? ` (${origin.error})` : ''}`);
    }
    // Before any record exists: a refusal here must leave nothing behind to roll back. These
    // are reads, so they run side by side (a restore's source is rarely live: that is a command).
    const [live] = await Promise.all([
      origin ? this.dm.isLive(ctx, origin.dmName) : false,
      spec.roomBytes === undefined ? undefined : this.pool.ensureRoom(ctx, spec.roomBytes),
      // A snapshot is refused before any suspend when that suspend would freeze (ensureNoFreeze).
      spec.kind === 'snapshot' ? this.pool.ensureSnapshotable(ctx) : origin ? this.pool.ensureMetadataWritable(ctx) : undefined,
    ]);
    const deviceId = this.pool.allocateId();
    const t = now();
    let rec: DeviceRecord;
    try {
      // Named fields only: a caller's spec may carry more (the controller's topology), which
      // has no place in the record (and recordCopy relies on meta being its only nested field).
      const { id, dmName, kind, sizeBytes, meta, origin } = spec;
      rec = await this.store.createDevice({
        id, dmName, kind, sizeBytes, meta, ...(origin === undefined ? {} : { origin }), deviceId, state: 'Creating', createdAt: t, updatedAt: t,
      });
    } catch (err) {
      this.pool.releaseId(deviceId);
      throw err;
    }
    try {
      rec = origin ? await this.snapshot(ctx, rec, origin, live) : await this.createThin(ctx, rec);
    } catch (err) {
      await this.rollbackCreate(ctx, rec, err);
      throw (await this.pool.refusal(ctx, err)) ?? toStatus(err, `creating ${spec.kind} ${spec.id}`);
    }
    return this.store.updateDevice(rec.id, (r) => {
      r.state = 'Created';
      delete r.error;
      r.updatedAt = now();
    });
  }

  private async createThin(ctx: OpContext, rec: DeviceRecord): Promise<DeviceRecord> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.pool.commit(ctx, `create_thin ${rec.deviceId}`);
        return rec;
      } catch (err) {
        if (!isDmError(err, 'exists') || attempt >= MAX_ID_COLLISIONS) throw err;
        rec = await this.takeNewId(rec);
      }
    }
  }

  /** The id is held by a device no record knows: leave it alone and use another. */
  private async takeNewId(rec: DeviceRecord): Promise<DeviceRecord> {
    this.log.warn('thin id already used in the pool by a device with no record; choosing another', { pool: this.pool.name, deviceId: rec.deviceId, volume: rec.id });
    this.pool.claimId(rec.deviceId);
    const deviceId = this.pool.allocateId();
    return this.store.updateDevice(rec.id, (r) => { r.deviceId = deviceId; });
  }

  /** `live`: the origin has a table, so it is suspended around the message (the kernel document's rule). */
  private async snapshot(ctx: OpContext, rec: DeviceRecord, origin: DeviceRecord, live: boolean): Promise<DeviceRecord> {
    let suspended = false;
    let endWindow: (() => number) | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.pool.commit(ctx, `create_snap ${rec.deviceId} ${origin.deviceId}`, live ? {
          during: async () => {
            await this.store.updateDevice(origin.id, (r) => { r.state = 'Suspending'; r.updatedAt = now(); });
            endWindow = this.pool.deps.metrics.suspendWindow.startTimer();
            await suspendForSnapshot(this.pool, ctx, origin);
            suspended = true;
          },
          after: async () => {
            try {
              if (suspended) await this.resumeOrigin(ctx, origin, () => endWindow?.());
            } finally {
              suspended = false;
              endWindow = undefined;
            }
          },
        } : {});
        return rec;
      } catch (err) {
        if (!isDmError(err, 'exists') || attempt >= MAX_ID_COLLISIONS) throw err;
        rec = await this.takeNewId(rec);
      }
    }
  }

  /** Resumes a snapshot's origin whatever happened; a failure here is the worst case, so it is loud. */
  private async resumeOrigin(ctx: OpContext, origin: DeviceRecord, resumed: () => void): Promise<void> {
    try {
      await retry(ctx, SUSPEND_RETRY, () => this.dm.resume(ctx, origin.dmName));
      resumed(); // the freeze ends here; the bookkeeping below is not part of it
    } catch (err) {
      this.log.error('origin left suspended after snapshot; reconcile will retry the resume', { volume: origin.id, error: String(err) });
      await this.markFaulty(origin.id, 'Resuming', `resuming after snapshot: ${String(err)}`);
      throw err;
    }
    await this.store.updateDevice(origin.id, (r) => { r.state = 'Activated'; r.updatedAt = now(); });
  }

  private async rollbackCreate(ctx: OpContext, rec: DeviceRecord, cause: unknown): Promise<void> {
    const current = (await this.store.getDevice(rec.id)) ?? rec;
    try {
      if (!CERTAINLY_NOT_CREATED.some((k) => isDmError(cause, k))) {
        await this.pool.commit(ctx, `delete ${current.deviceId}`, { accept: (e) => isDmError(e, 'no_data') });
      }
      await this.forget(current);
    } catch (err) {
      // Keep the record, and so the id, so nothing else is ever given this half-made device.
      this.log.error('rollback of a half-made device failed; marked Faulty', { volume: rec.id, deviceId: current.deviceId, error: String(err) });
      await this.markFaulty(rec.id, 'Creating', `${String(cause)}; rollback: ${String(err)}`);
    }
  }

  /** Faulty keeps the record (and its id) and says what was being done, for the repair. */
  async markFaulty(id: string, from: DeviceState, why: string): Promise<void> {
    await this.store.updateDevice(id, (r) => {
      r.state = 'Faulty';
      r.faultyFrom = from;
      r.error = `${from}: ${why}`;
      r.updatedAt = now();
    }).catch((e: unknown) => this.log.error('could not record Faulty state', { volume: id, error: String(e) }));
  }

  /** Makes /dev/mapper/NAME exist with a live table of the recorded size; idempotent. */
  async activate(ctx: OpContext, id: string): Promise<string> {
    const rec = await this.get(id);
    if (!USABLE.has(rec.state)) throw failedPrecondition(`device ${id} is ${rec.state}${rec.error ? `: ${rec.error}` : ''}`);
    // Not recorded active: the name is almost always free, so create first and look only when
    // the kernel says it is taken (it refuses a duplicate name without changing anything).
    if (rec.state !== 'Activated' && await this.createTable(ctx, rec)) return this.devicePath(rec);
    const info = await this.dm.info(ctx, rec.dmName);
    if (info?.live) {
      if (info.suspended) await retry(ctx, SUSPEND_RETRY, () => this.dm.resume(ctx, rec.dmName));
      if (rec.state !== 'Activated') await this.store.updateDevice(id, (r) => { r.state = 'Activated'; delete r.error; });
      return this.devicePath(rec);
    }
    if (info) await this.dm.remove(ctx, rec.dmName); // a name with no live table is debris of a failed create
    if (!await this.createTable(ctx, rec)) throw aborted(`dm name ${rec.dmName} was taken again while ${id} was being activated; retry`);
    return this.devicePath(rec);
  }

  /** `dmsetup create` of the device's table; false when the name is taken already. */
  private async createTable(ctx: OpContext, rec: DeviceRecord): Promise<boolean> {
    const { metrics } = this.pool.deps;
    try {
      await transition(this.store, rec.id, { trying: 'Activating', success: 'Activated' }, () =>
        metrics.time(metrics.commandDuration, 'activate', () => this.dm.create(ctx, rec.dmName, this.table(rec))));
      return true;
    } catch (err) {
      if (isDmError(err, 'exists')) return false;
      throw toStatus(err, `activating ${rec.id}`);
    }
  }

  /** Removes the dm device (not the thin device); idempotent; busy → FAILED_PRECONDITION. */
  async deactivate(ctx: OpContext, id: string): Promise<void> {
    const rec = await this.store.getDevice(id);
    if (!rec) return;
    await this.deactivateSeen(ctx, rec, await this.dm.info(ctx, rec.dmName));
  }

  /** Deactivation given a fresh `dmsetup info`, so a caller that already read it does not read it twice. */
  private async deactivateSeen(ctx: OpContext, rec: DeviceRecord, info: DmDeviceInfo | undefined): Promise<void> {
    if (!info) {
      if (rec.state === 'Activated' || rec.state === 'Deactivating') await this.store.updateDevice(rec.id, (r) => { r.state = 'Deactivated'; });
      return;
    }
    try {
      await transition(this.store, rec.id, { trying: 'Deactivating', success: 'Deactivated' }, () =>
        retry(ctx, BUSY_RETRY, () => this.dm.remove(ctx, rec.dmName)));
    } catch (err) {
      throw toStatus(err, `deactivating ${rec.id}`);
    }
  }

  /** Deactivates and deletes the thin device, then forgets it; a missing record is success. */
  remove(ctx: OpContext, id: string): Promise<void> {
    return this.admission.run(() => this.removeNow(ctx, id));
  }

  private async removeNow(ctx: OpContext, id: string): Promise<void> {
    const rec = await this.store.getDevice(id);
    if (!rec) return;
    if (RECORDED_INACTIVE.has(rec.state) && await this.deleteUnlessHeld(ctx, rec)) return;
    const info = await this.dm.info(ctx, rec.dmName);
    if (info && info.openCount > 0) throw failedPrecondition(`${rec.kind} ${id} is in use (device ${rec.dmName} is open ${info.openCount} time(s))`);
    await this.deactivateSeen(ctx, rec, info);
    try {
      await this.store.updateDevice(id, (r) => { r.state = 'Removing'; r.updatedAt = now(); });
      await retry(ctx, BUSY_RETRY, () => this.pool.commit(ctx, `delete ${rec.deviceId}`, { accept: (e) => isDmError(e, 'no_data') }));
    } catch (err) {
      await this.markFaulty(id, 'Removing', String(err));
      throw toStatus(err, `deleting ${rec.kind} ${id}`);
    }
    await this.forget(rec);
  }

  /**
   * The delete message straight away, for a device recorded as having no table: the kernel
   * refuses (EBUSY, changing nothing) to delete a thin device that any table holds open, so
   * the `dmsetup info` the full path starts with is needed only when it does. False then, with
   * the record as it was, for the full path to deactivate first or say the device is in use.
   */
  private async deleteUnlessHeld(ctx: OpContext, rec: DeviceRecord): Promise<boolean> {
    try {
      await this.store.updateDevice(rec.id, (r) => { r.state = 'Removing'; r.updatedAt = now(); });
      await this.pool.commit(ctx, `delete ${rec.deviceId}`, { accept: (e) => isDmError(e, 'no_data') });
    } catch (err) {
      if (isDmError(err, 'busy')) {
        await this.store.updateDevice(rec.id, (r) => { r.state = rec.state; });
        return false;
      }
      await this.markFaulty(rec.id, 'Removing', String(err));
      throw toStatus(err, `deleting ${rec.kind} ${rec.id}`);
    }
    await this.forget(rec);
    return true;
  }

  private async forget(rec: DeviceRecord): Promise<void> {
    await this.store.deleteDevice(rec.id);
    this.pool.releaseId(rec.deviceId);
  }

  /**
   * Grows a device: the kernel first, then the record. The record's size is the promise that
   * the device is that big (the Kubernetes controller answers ControllerExpandVolume from it, and
   * NodeExpandVolume then grows the filesystem), so it is written only once the table is. A
   * crash in between leaves a table longer than its record, which is harmless: the retried
   * request finds the table long enough and records the size.
   */
  async resize(ctx: OpContext, id: string, sizeBytes: number): Promise<DeviceRecord> {
    const rec = await this.get(id);
    if (!USABLE.has(rec.state)) throw failedPrecondition(`device ${id} is ${rec.state}`);
    if (sizeBytes <= rec.sizeBytes) {
      await this.applySize(ctx, rec);
      return rec;
    }
    await this.applySize(ctx, { ...rec, sizeBytes });
    return this.store.updateDevice(id, (r) => { r.sizeBytes = Math.max(r.sizeBytes, sizeBytes); r.updatedAt = now(); });
  }

  /** Reloads a live device whose table is shorter than its record. */
  async applySize(ctx: OpContext, rec: DeviceRecord): Promise<void> {
    try {
      const sectors = await this.dm.liveThinSectors(ctx, rec.dmName);
      // Not active: activation will use the recorded size.
      if (sectors === undefined || sectors * SECTOR >= rec.sizeBytes) return;
      await this.pool.ensureNoFreeze(ctx, `growing ${rec.id}`); // the resume below suspends it with a flush
      await this.dm.reload(ctx, rec.dmName, this.table(rec));
      // With a table loaded, resume suspends the device first (flushing, freezing its
      // filesystem), swaps the table in and resumes: one command where suspend + resume took two.
      await retry(ctx, SUSPEND_RETRY, () => this.dm.resume(ctx, rec.dmName));
    } catch (err) {
      throw toStatus(err, `resizing ${rec.id}`);
    }
  }

  /**
   * True when the live device has no block provisioned, so it reads zeros everywhere: a thin
   * device never written, or a copy of one. False when that is not known (the status failed).
   */
  async unwritten(ctx: OpContext, rec: DeviceRecord): Promise<boolean> {
    try {
      return (await this.dm.thinStatus(ctx, rec.dmName)).mappedSectors === 0;
    } catch {
      return false; // a missed saving, nothing worse: mkfs then assumes nothing of the device
    }
  }

  /** Bytes the device has allocated in the pool, when it is active (the kernel reports it only then). */
  async mappedBytes(ctx: OpContext, rec: DeviceRecord): Promise<number | undefined> {
    const info = await this.dm.info(ctx, rec.dmName);
    if (!info?.live) return undefined;
    return (await this.dm.thinStatus(ctx, rec.dmName)).mappedSectors * SECTOR;
  }
}
