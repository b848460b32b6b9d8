import type { DeviceMapper, DmDeviceInfo, ThinIds, ThinPoolStatus, ThinPoolTable } from '../devmapper/types.ts';
import { isDmError } from '../devmapper/types.ts';
import { errorMessage, resourceExhausted, unavailable } from '../errors.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { background, type OpContext } from '../system/context.ts';
import { sleep } from '../system/delay.ts';
import { Mutex } from '../system/lock.ts';
import type { DeviceRecord, StateStore } from '../state/types.ts';
import { metadataSnapExclusive } from './metadata-snap.ts';
import { readBacking, type BackingFiles, type BackingFs, type BackingReading } from './backing.ts';
import { allocatableBytes, assessPool, DEFAULT_THRESHOLDS, freezeRefusal, metadataLow, metadataRefusal, POOL_CONDITIONS, type PoolHealth, type PoolThresholds } from './health.ts';

/** Thin device ids are 24-bit (kernel-thin-provisioning.rst). */
export const MAX_DEVICE_ID = (1 << 24) - 1;

/**
 * How old a healthy status reading the admission checks and Probe accept as it is. Usage moves
 * slowly against this, and the modes that matter (read-only, failed) make the kernel refuse
 * changes.
 */
export const RECENT_READING_MS = 5_000;

/**
 * How old a healthy reading may be and still admit a change, which then reads the status again
 * after its message, off the reply's path (see recentHealth).
 */
export const USABLE_READING_MS = 30_000;

/** How long a stamp waits before queueing behind the messages (see stampSoon). */
export const STAMP_DELAY_MS = 100;

export interface PoolDeps {
  dm: DeviceMapper;
  store: StateStore;
  log: Logger;
  metrics: Metrics;
  /** Milliseconds, for the ages of status readings; default performance.now. */
  clock?: () => number;
  /** The filesystem under a file-backed pool's data file; without it every pool counts as device-backed. */
  backing?: BackingFs;
  /** The pool's files when configured; else those behind its loop devices. */
  backingFiles?: BackingFiles;
}

export interface PoolSettings {
  name: string;
  thresholds?: PoolThresholds;
  overprovisionRatio?: number;
}

/**
 * One thin pool: its health, its device-id space and the serialised channel of
 * metadata messages. Every create/snapshot/delete goes through `commit`, and the pool's
 * transaction id is stamped after it, so a start can tell when another tool changed the pool.
 */
export class ThinPool {
  readonly name: string;
  readonly dataBlockSectors: number;
  /** major:minor of the pool device, used in thin tables so no /dev node is needed. */
  readonly devNo: string;
  /** The pool table's metadata device ("major:minor" or a path), for reading the metadata itself. */
  private metadataDev: string | undefined;
  /** The table's data device (its file, for a loop device, bounds what the pool can take) and the last reading of it. */
  private dataDev: string | undefined;
  private lastBacking: BackingReading | undefined;
  private backingFailing = false;
  readonly deps: PoolDeps;
  private readonly thresholds: PoolThresholds;
  private readonly overprovision: number;
  private readonly messages = new Mutex();
  private readonly usedIds = new Set<number>();
  private nextId = 0;
  private inflightStatus: Promise<ThinPoolStatus> | undefined;
  private lastStatus: { at: number; status: ThinPoolStatus } | undefined;
  /** The reading attach took, until the first status() call after it; see status(). */
  private attachReading: ThinPoolStatus | undefined;
  private tx = 0;
  private stampQueued = false;
  /** A change was admitted on a reading over RECENT_READING_MS old: read again after it. */
  private rereadAfterChange = false;
  private readonly stamps = new Set<Promise<void>>();
  /** Set when the pool's transaction id moved without us: someone else is sending messages. */
  txMismatch: string | undefined;

  private constructor(deps: PoolDeps, s: PoolSettings, dataBlockSectors: number, devNo: string) {
    this.deps = deps;
    this.name = s.name;
    this.thresholds = s.thresholds ?? DEFAULT_THRESHOLDS;
    this.overprovision = s.overprovisionRatio ?? 1;
    this.dataBlockSectors = dataBlockSectors;
    this.devNo = devNo;
  }

  /** Attaches to a live pool; the device-id space is loaded from the records. */
  static async attach(ctx: OpContext, deps: PoolDeps, settings: PoolSettings, known?: { info: DmDeviceInfo; table: ThinPoolTable }): Promise<ThinPool> {
    const info = known?.info ?? await deps.dm.info(ctx, settings.name);
    if (!info || !info.live) throw unavailable(`thin pool ${settings.name} is not active`);
    const table = known?.table ?? await deps.dm.poolTable(ctx, settings.name);
    const pool = new ThinPool(deps, settings, table.dataBlockSectors, `${info.major}:${info.minor}`);
    pool.metadataDev = table.metadataDev;
    pool.dataDev = table.dataDev;
    const [status] = await Promise.all([deps.dm.poolStatus(ctx, settings.name), pool.readBacking()]);
    pool.tx = status.transactionId;
    pool.lastStatus = { at: pool.now(), status };
    pool.attachReading = status;
    for (const r of await deps.store.listDevices()) pool.usedIds.add(r.deviceId);
    return pool;
  }

  get transactionId(): number { return this.tx; }

  private now(): number { return this.deps.clock?.() ?? performance.now(); }

  /**
   * The pool's status line. Concurrent callers share one `dmsetup status` (ListVolumes asks
   * for every volume's condition at once); a call that starts after it finished reads anew.
   * The first call after attach (the start's reconcile) gets attach's own reading if no message
   * was sent since and it is under RECENT_READING_MS old: a start reads the status once, not twice.
   */
  status(ctx: OpContext): Promise<ThinPoolStatus> {
    const fromAttach = this.attachReading;
    this.attachReading = undefined;
    if (fromAttach && this.lastStatus?.status === fromAttach && this.now() - this.lastStatus.at <= RECENT_READING_MS) {
      return Promise.resolve(fromAttach);
    }
    if (this.inflightStatus) return this.inflightStatus;
    const p = this.deps.dm.poolStatus(ctx, this.name).finally(() => { this.inflightStatus = undefined; });
    p.then((status) => { this.lastStatus = { at: this.now(), status }; }, () => undefined);
    this.inflightStatus = p;
    return p;
  }

  async health(ctx: OpContext): Promise<PoolHealth> {
    const [status] = await Promise.all([this.status(ctx), this.readBacking()]);
    return this.assess(status);
  }

  /** Reads a file-backed pool's data file room; a failed reading keeps the last (the file went away: the pool's I/O shows it). */
  private async readBacking(): Promise<void> {
    if (!this.deps.backing || this.dataDev === undefined) return;
    try {
      this.lastBacking = await readBacking(this.deps.backing, this.dataDev, this.metadataDev, this.deps.backingFiles);
      this.backingFailing = false;
    } catch (err) {
      if (this.backingFailing) return; // said once per streak, not on every reading
      this.backingFailing = true;
      this.deps.log.warn('could not read the filesystem under the pool\'s data file', { pool: this.name, error: errorMessage(err) });
    }
  }

  /** The last reading of a file pool's backing files. */
  get backing(): BackingReading | undefined { return this.lastBacking; }

  /**
   * Health for the checks before a create or snapshot, and for Probe: a healthy reading up to
   * RECENT_READING_MS old will do, so a burst of requests (or a restore, which checks room and
   * metadata) pays for one `dmsetup status`, not one each. One up to USABLE_READING_MS old will
   * do too, and the change it admits reads the status again after its message (the stamp's
   * job): a request that comes alone no longer waits for a read (half a create's time, in the
   * bench), and the readings stay fresh while changes come. The admission is advisory either way
   * (a thin pool's space moves with every write): the kernel is the last word, a pool that
   * turned read-only since refuses the message, and `refusal` explains it from a fresh reading.
   * Probe passes RECENT_READING_MS: it must see a pool that went bad, and no change follows it.
   */
  async recentHealth(ctx: OpContext, maxAgeMs = USABLE_READING_MS): Promise<PoolHealth> {
    const r = this.lastStatus;
    const age = r ? this.now() - r.at : Infinity;
    if (r && age <= maxAgeMs) {
      const h = this.assess(r.status);
      if (h.condition === 'ok' && !metadataLow(h, this.thresholds)) { // anything less is read afresh
        this.rereadAfterChange ||= age > RECENT_READING_MS;
        return h;
      }
    }
    return this.health(ctx);
  }

  private assess(status: ThinPoolStatus): PoolHealth {
    const h = assessPool(status, this.dataBlockSectors, this.thresholds, this.lastBacking);
    this.recordHealth(h);
    return h;
  }

  /**
   * Why the pool refused a message, as RESOURCE_EXHAUSTED, when a fresh reading shows it cannot
   * take new devices (read-only, failed, out of metadata); undefined when it can.
   */
  async refusal(ctx: OpContext, err: unknown): Promise<Error | undefined> {
    if (!isDmError(err, 'invalid') && !isDmError(err, 'no_space')) return undefined;
    const h = await this.health(ctx).catch(() => undefined);
    if (!h || (h.writable && !metadataLow(h, this.thresholds))) return undefined;
    return resourceExhausted(`thin pool ${this.name} refused the change: ${h.reasons.join('; ')}`);
  }

  /** Bytes a new volume may still claim (GetCapacity and the CreateVolume check agree by construction). */
  async capacity(ctx: OpContext, reading?: PoolHealth): Promise<number> {
    return allocatableBytes(reading ?? await this.health(ctx), this.overprovision);
  }

  /** Refuses new devices, with the reason, when the pool cannot take them; nothing existing is touched. */
  async ensureRoom(ctx: OpContext, sizeBytes: number): Promise<void> {
    const h = await this.recentHealth(ctx);
    if (!h.writable) throw resourceExhausted(`thin pool ${this.name} refuses new volumes: ${h.reasons.join('; ')}`);
    const room = allocatableBytes(h, this.overprovision);
    if (sizeBytes > room) {
      throw resourceExhausted(`thin pool ${this.name} can hold at most ${room} more bytes (what it can still take x overprovision ratio ${this.overprovision}), ${sizeBytes} requested`);
    }
  }

  /**
   * Refuses, before any record or suspend, what would freeze a live device on a full or broken
   * pool (freezeRefusal), on a fresh reading: a healthy one of a moment ago let a snapshot freeze
   * its origin for its whole deadline on a pool that had filled since (issue 24).
   */
  async ensureNoFreeze(ctx: OpContext, what: string): Promise<void> {
    const refused = freezeRefusal(this.name, await this.health(ctx), what);
    if (refused) throw refused;
  }

  /** A snapshot: nothing that would freeze its origin, and metadata room for it, on one fresh reading. */
  async ensureSnapshotable(ctx: OpContext): Promise<void> {
    const h = await this.health(ctx);
    const refused = freezeRefusal(this.name, h, 'a snapshot') ?? metadataRefusal(this.name, h, this.thresholds);
    if (refused) throw refused;
  }

  /** Ensures a change of metadata (a copy of a volume) is possible: it needs metadata space, not data space. */
  async ensureMetadataWritable(ctx: OpContext): Promise<void> {
    const refused = metadataRefusal(this.name, await this.recentHealth(ctx), this.thresholds);
    if (refused) throw refused;
  }

  allocateId(): number {
    for (let n = 0; n <= MAX_DEVICE_ID; n++) {
      const id = (this.nextId + n) % (MAX_DEVICE_ID + 1);
      if (!this.usedIds.has(id)) {
        this.usedIds.add(id);
        this.nextId = (id + 1) % (MAX_DEVICE_ID + 1);
        return id;
      }
    }
    throw resourceExhausted(`thin pool ${this.name} has no free device ids`);
  }

  /** Marks an id as taken without a record of ours (a device found in the pool). */
  claimId(id: number): void { this.usedIds.add(id); }
  releaseId(id: number): void { this.usedIds.delete(id); }
  isIdUsed(id: number): boolean { return this.usedIds.has(id); }

  /**
   * Sends one metadata message: message → (reply) → stamp. The caller has recorded its intent
   * (the record's trying state) before.
   * `during` runs inside the serialised section right before the message (snapshots suspend
   * their origin there, so no other message can lengthen the freeze), and `after` right after
   * it (the resume).
   *
   * The kernel commits the pool's metadata after every message, so the change is durable when
   * the message returns, and the record's own state is the confirmation a restart reads. The
   * transaction id is bookkeeping: it lets a start or a later stamp notice another tool (or an
   * older copy of the metadata). So the stamp is queued behind the message and not waited for:
   * it cost every create, snapshot and delete one more command (a third of a create's time, in
   * the bench), and messages that queue up meanwhile share one stamp. A crash before the stamp
   * leaves the ids equal, which a start reads as in sync, as it is.
   */
  async commit(ctx: OpContext, msg: string, hooks: { during?: () => Promise<void>; after?: () => Promise<void>; accept?: (e: unknown) => boolean } = {}): Promise<void> {
    await this.messages.run(async () => {
      try {
        await hooks.during?.();
        await this.send(ctx, msg).catch((e: unknown) => { if (!hooks.accept?.(e)) throw e; });
      } finally {
        await hooks.after?.();
      }
      this.stampSoon(); // still holding the lock, so settled() cannot miss it
    });
  }

  /** Runs fn in the messages' serialised section: no snapshot's suspend-message-resume is under way meanwhile. */
  serialised<T>(fn: () => Promise<T>): Promise<T> { return this.messages.run(fn); }

  /**
   * Several messages in one serialised section, between one `during` and one `after`: a group
   * snapshot suspends every member, sends a create_snap for each and resumes them all, and no
   * other message may come between (it would lengthen the freeze of every member). The first
   * failure stops the sequence; `after` runs whatever happened.
   */
  async commitAll(ctx: OpContext, msgs: readonly string[], hooks: { during?: () => Promise<void>; after?: () => Promise<void>; sending?: (i: number) => void; sent?: (i: number) => void } = {}): Promise<void> {
    await this.messages.run(async () => {
      try {
        await hooks.during?.();
        for (const [i, msg] of msgs.entries()) {
          hooks.sending?.(i);
          await this.send(ctx, msg);
          hooks.sent?.(i);
        }
      } finally {
        await hooks.after?.();
      }
      this.stampSoon();
    });
  }

  /**
   * Queues one stamp behind the messages, STAMP_DELAY_MS from now, unless one is waiting and not
   * started yet. The delay lets the reply go out before the spawn takes the CPU (spawned at
   * once, it held a create's reply back several times longer than the create's one record
   * write). A change admitted on an older reading has the status read again first
   * (recentHealth).
   */
  private stampSoon(): void {
    if (this.stampQueued) return;
    this.stampQueued = true;
    const stamp = sleep(STAMP_DELAY_MS)
      .then(() => this.messages.run(async () => {
        this.stampQueued = false;
        if (this.rereadAfterChange) {
          this.rereadAfterChange = false;
          await this.status(background).catch(() => undefined); // the next admission's reading
        }
        await this.bumpTx(background);
      }))
      .catch((err: unknown) => {
        // Nothing is lost: the id stays where it was, and the next change stamps again.
        this.deps.log.error('could not stamp the pool transaction id', { pool: this.name, error: errorMessage(err) });
      })
      .finally(() => this.stamps.delete(stamp));
    this.stamps.add(stamp);
  }

  /** Resolves once every change so far is stamped (or its stamp failed): for shutdown and tests. */
  async settled(): Promise<void> {
    do {
      await this.messages.run(async () => undefined);
      await Promise.all(this.stamps);
    } while (this.stamps.size > 0);
  }

  private async bumpTx(ctx: OpContext): Promise<void> {
    const cur = this.tx;
    const next = cur + 1;
    try {
      await this.send(ctx, `set_transaction_id ${cur} ${next}`);
      this.tx = next;
    } catch (err) {
      if (!isDmError(err, 'invalid')) throw err;
      // Someone else moved the id: keep working from the pool's value, but say so.
      const actual = (await this.deps.dm.poolStatus(ctx, this.name)).transactionId;
      this.txMismatch = `pool transaction id was ${actual} where this driver expected ${cur}: another tool is changing pool ${this.name}`;
      this.deps.log.error('transaction id mismatch', { pool: this.name, expected: cur, actual });
      this.tx = actual;
      return;
    }
    await this.deps.store.updatePool((p) => ({ ...p, name: this.name, transactionId: next, updatedAt: new Date().toISOString() }));
  }

  /**
   * The thin ids in the pool's metadata (inactive devices included) and the store's records,
   * read with no pool message in between, so each can be judged against the other. The pool
   * record says while a metadata snapshot is ours, so one a crash left held is released here.
   */
  async metadataView(ctx: OpContext): Promise<{ ids: Set<number>; records: DeviceRecord[] } | { unavailable: string }> {
    // The metadata snapshot's turn first: waiting for a backup's stream while holding the
    // messages would stall every create and delete behind that stream.
    return metadataSnapExclusive(this.name, () => this.messages.run(async () => {
      const { store, dm } = this.deps;
      let leftByCrash = false;
      const held = (on: boolean) => store.updatePool((p) => {
        leftByCrash ||= on && p?.metadataSnapHeld === true;
        return { ...(p ?? { name: this.name, transactionId: this.tx }), metadataSnapHeld: on, updatedAt: new Date().toISOString() };
      });
      await held(true);
      if (leftByCrash) {
        await dm.message(ctx, this.name, 'release_metadata_snap').catch(() => undefined);
        this.deps.log.warn('released a metadata snapshot left held by a crash', { pool: this.name });
      }
      let got: ThinIds;
      try {
        got = await dm.thinIds(ctx, this.name, this.metadataDev);
      } finally {
        await held(false);
      }
      if ('unavailable' in got) return got;
      return { ids: new Set(got.ids), records: await store.listDevices() };
    }));
  }

  send(ctx: OpContext, msg: string): Promise<void> {
    this.attachReading = undefined; // a message may move the transaction id
    const op = msg.split(' ', 1)[0] ?? 'message';
    return this.deps.metrics.time(this.deps.metrics.commandDuration, op, () => this.deps.dm.message(ctx, this.name, msg));
  }

  private recordHealth(h: PoolHealth): void {
    const { poolCondition } = this.deps.metrics;
    this.deps.metrics.recordPool(this.name, { ...h, capacityBytes: allocatableBytes(h, this.overprovision) });
    for (const c of POOL_CONDITIONS) {
      poolCondition.set({ pool: this.name, condition: c }, h.condition === c ? 1 : 0);
    }
  }
}

/**
 * Probe's answer: not ready only in states a restart cannot cure by itself (failed,
 * needs_check, read-only). A full pool still serves reads and deletes, so it stays ready.
 */
export function poolReadiness(pool: ThinPool) {
  return {
    ready: async (c: OpContext) => {
      const h = await pool.recentHealth(c, RECENT_READING_MS);
      const broken = h.condition === 'failed' || h.condition === 'needs_check' || h.condition === 'read_only';
      return { ready: !broken, reason: h.reasons.join('; ') };
    },
  };
}
