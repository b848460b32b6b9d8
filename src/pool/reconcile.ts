import type { DmDeviceInfo, ThinTable } from '../devmapper/types.ts';
import { isDmError } from '../devmapper/types.ts';
import { errorMessage } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord, DeviceState, GroupState } from '../state/types.ts';
import type { Devices } from './devices.ts';
import { reconcileGroups, type GroupSnapshots } from './group.ts';
import { retry, SUSPEND_RETRY } from './retry.ts';

/** What the pass read of a live dm device before the repairs: its info, and its table when thin. */
type Seen = DmDeviceInfo & { table?: ThinTable };

export type RepairAction = 'rolled_back' | 'deleted' | 'resumed' | 'reactivated' | 'settled' | 'marked_faulty' | 'resized' | 'finished';

export interface ReconcileReport {
  /** The pool's transaction id against the one last confirmed in the store. */
  tx: { pool: number; store: number | undefined; verdict: 'in_sync' | 'one_unconfirmed' | 'first_start' | 'mismatch' };
  /** Devices, and group snapshots (whose `from` is a group state). */
  repaired: Array<{ id: string; from: DeviceState | GroupState; action: RepairAction }>;
  faulty: Array<{ id: string; error: string }>;
  /** Thin devices in this pool that no record knows; dmName only when the device is live. */
  orphans: Array<{ dmName?: string; deviceId: number }>;
  /**
   * Whether the records were compared with the pool's metadata: 'skipped' when not asked for,
   * 'unavailable' when it could not be read. Without it, only live devices are judged.
   */
  metadata: 'checked' | 'skipped' | 'unavailable';
}

/**
 * Runs fn holding the lock of one device id, the caller's per-volume serialisation; resolves
 * false without running it when the lock is held (an RPC is working on that device).
 */
export type Exclusive = (id: string, fn: () => Promise<void>) => Promise<boolean>;

export interface ReconcileOptions {
  /**
   * Given when RPCs may run during the reconcile (the node agent's periodic pass). A device an
   * RPC holds is skipped: it is that RPC's business, and the next pass sees it. The others are
   * repaired holding their lock, and skipped if an RPC changed them since they were read, since
   * what was read about them, from the pool and the kernel, may then be stale.
   */
  exclusive?: Exclusive;
  /**
   * Also compare the records with the pool's metadata (a metadata snapshot read by thin_ls):
   * finds devices deleted behind the driver's back and inactive orphans. It costs three
   * commands and two pool writes, most of a reconcile, and no repair of a crash needs it, so
   * starts skip it and the first pass after serving begins makes it. Without it, Faulty
   * devices with no live table are left for that pass. Default true.
   */
  metadata?: boolean;
  /** The pool's group snapshots, repaired before the devices (see reconcileGroups). */
  groups?: GroupSnapshots;
}

/**
 * Device states made true again after a restart: where containerd's devmapper snapshotter
 * (ensureDeviceStates) marks a record left mid-operation Faulty, here every such record is
 * finished or undone by what the kernel shows now, using only idempotent steps, so running it
 * again (or crashing inside it) converges to the same place.
 */
export async function reconcile(ctx: OpContext, devices: Devices, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const { pool } = devices;
  const { store, dm, log, metrics } = pool.deps;
  const withMetadata = opts.metadata ?? true;
  const end = metrics.reconcileDuration.startTimer({ metadata: withMetadata ? 'checked' : 'skipped' });
  const groups = opts.groups ? await reconcileGroups(ctx, opts.groups, opts.exclusive) : { repaired: [], faulty: [] };
  // Independent reads, side by side: a restart waits for the slowest, not for their sum.
  const [tx, infos, tables, view] = await Promise.all([
    txVerdict(ctx, devices), dm.infoAll(ctx), dm.thinTableAll(ctx),
    withMetadata ? pool.metadataView(ctx) : Promise.resolve({ unavailable: 'not asked for' }),
  ]);
  const report: ReconcileReport = { tx, repaired: [...groups.repaired], faulty: [...groups.faulty], orphans: [], metadata: 'skipped' };
  if (withMetadata) report.metadata = 'ids' in view ? 'checked' : 'unavailable';
  if ('unavailable' in view && withMetadata) log.warn('pool metadata not compared with the records this time', { pool: pool.name, reason: view.unavailable });
  const live = new Map(infos.map((i) => [i.name, i]));
  const seen = (name: string): Seen | undefined => { const i = live.get(name); return i && { ...i, table: tables.get(name) }; };
  const ids = 'ids' in view ? view.ids : undefined;
  const records = 'records' in view ? view.records : await store.listDevices();
  for (const rec of records) {
    // Retrying a Faulty device with no live table needs to know its thin id is still in the
    // pool: one that vanished would otherwise be "settled" back to health until the next
    // metadata check. A live one (left suspended, say) is repaired now.
    if (!withMetadata && rec.state === 'Faulty' && !live.has(rec.dmName)) continue;
    if (untouched(rec, seen(rec.dmName), ids)) continue;
    if (!opts.exclusive) {
      await reconcileOne(ctx, devices, report, rec, ids, seen(rec.dmName));
      continue;
    }
    const ran = await opts.exclusive(rec.id, async () => {
      const current = await store.getDevice(rec.id);
      if (current && JSON.stringify(current) === JSON.stringify(rec)) await reconcileOne(ctx, devices, report, rec, ids, seen(rec.dmName));
      else log.debug('reconcile skipped a device an RPC changed meanwhile', { volume: rec.id });
    });
    if (!ran) log.debug('reconcile skipped a device an RPC is working on', { volume: rec.id });
  }
  report.orphans = await findOrphans(devices, tables, records, ids);
  for (const o of report.orphans) log.warn('thin device in pool has no record', { pool: pool.name, ...o });
  end({ outcome: report.faulty.length > 0 ? 'faulty' : 'ok' });
  return report;
}

async function reconcileOne(ctx: OpContext, devices: Devices, report: ReconcileReport, rec: DeviceRecord, ids: Set<number> | undefined, info: Seen | undefined): Promise<void> {
  const { log, metrics } = devices.pool.deps;
  const from = rec.state === 'Faulty' ? (rec.faultyFrom ?? 'Faulty') : rec.state;
  if (ids && MAY_LACK_ID.has(from) === false && !ids.has(rec.deviceId)) {
    await reportVanished(devices, report, rec, from);
    return;
  }
  try {
    const action = await repairOne(ctx, devices, rec, from, info);
    if (action) {
      report.repaired.push({ id: rec.id, from: rec.state, action });
      metrics.reconcileRepairs.inc({ action });
      log.warn('reconcile repaired device', { volume: rec.id, from: rec.state, action });
    }
  } catch (err) {
    if (from !== 'Faulty') await devices.markFaulty(rec.id, from, errorMessage(err));
    report.faulty.push({ id: rec.id, error: errorMessage(err) });
    metrics.reconcileRepairs.inc({ action: 'marked_faulty' });
    log.error('reconcile could not repair device', { volume: rec.id, state: rec.state, error: errorMessage(err) });
  }
}

/**
 * A record whose state the kernel already shows (inactive with no table, or active with a live,
 * running table of its size): repairOne would do nothing, so it is passed over without a lock or
 * an await. On a quiet node that is nearly all of them, and the periodic pass took a lock, a
 * store read and two JSON.stringify for each, several times the cost of the pass without them.
 */
function untouched(rec: DeviceRecord, info: Seen | undefined, ids: Set<number> | undefined): boolean {
  if (ids && !ids.has(rec.deviceId)) return false;
  if (rec.state === 'Created' || rec.state === 'Deactivated') return info === undefined;
  if (rec.state !== 'Activated' || !info?.table) return false;
  return info.live && !info.suspended && info.table.lengthSectors * 512 >= rec.sizeBytes;
}

/** States in which a record's thin id may rightly be missing from the pool (not made yet, or being deleted). */
const MAY_LACK_ID = new Set<DeviceState>(['Unknown', 'Creating', 'Removing', 'Removed', 'Faulty']);

/**
 * A settled record whose thin id is not in the pool's metadata: something deleted it behind
 * the driver's back (or the metadata was replaced). Nothing can bring the data back, so the
 * record turns Faulty with the reason, and stays so until an operator deletes or force-cleans it.
 */
async function reportVanished(devices: Devices, report: ReconcileReport, rec: DeviceRecord, from: DeviceState): Promise<void> {
  const { pool } = devices;
  const error = `thin device ${rec.deviceId} is not in the metadata of pool ${pool.name}: it was deleted outside this driver, or the pool metadata was replaced; its data is gone`;
  // A repair that failed on the missing device left a vaguer reason: this one says what happened.
  if (rec.state !== 'Faulty' || rec.error !== error) await devices.markFaulty(rec.id, from, error);
  report.faulty.push({ id: rec.id, error });
  pool.deps.log.error('thin device vanished from the pool', { volume: rec.id, device_id: rec.deviceId, pool: pool.name });
}

async function txVerdict(ctx: OpContext, devices: Devices): Promise<ReconcileReport['tx']> {
  const { pool } = devices;
  const { store, log } = pool.deps;
  const P = (await pool.status(ctx)).transactionId;
  const S = (await store.getPool())?.transactionId;
  const verdict = S === undefined ? 'first_start' : P === S ? 'in_sync' : P === S + 1 ? 'one_unconfirmed' : 'mismatch';
  if (verdict === 'mismatch') {
    pool.txMismatch = `pool ${pool.name} is at transaction ${P} but this driver last confirmed ${S}: the pool was changed by another tool or restored from an older copy`;
    log.error('transaction id mismatch at start', { pool: pool.name, pool_tx: P, store_tx: S });
  }
  if (verdict !== 'in_sync') {
    await store.updatePool((p) => ({ ...p, name: pool.name, transactionId: P, updatedAt: new Date().toISOString() }));
  }
  return { pool: P, store: S, verdict };
}

async function repairOne(ctx: OpContext, devices: Devices, rec: DeviceRecord, from: DeviceState, info: Seen | undefined): Promise<RepairAction | undefined> {
  const { pool } = devices;
  const { store, dm } = pool.deps;
  switch (from) {
    case 'Unknown':
    case 'Creating':
      // The CO has not been told of success yet, so undoing is always allowed; it will retry.
      if (info) await dm.remove(ctx, rec.dmName, { retry: true });
      await pool.commit(ctx, `delete ${rec.deviceId}`, { accept: (e) => isDmError(e, 'no_data') });
      await store.deleteDevice(rec.id);
      pool.releaseId(rec.deviceId);
      return 'rolled_back';
    case 'Faulty':
      return undefined; // no record of what failed: leave it for an operator
    case 'Removing':
    case 'Removed':
      await devices.remove(ctx, rec.id);
      return 'deleted';
    default:
      return settleActivation(ctx, devices, rec, from, info);
  }
}

/** Table states (activate, suspend, resume, deactivate): the kernel's view decides. */
async function settleActivation(ctx: OpContext, devices: Devices, rec: DeviceRecord, from: DeviceState, info: Seen | undefined): Promise<RepairAction | undefined> {
  const { store, dm } = devices.pool.deps;
  const set = (state: DeviceState) => store.updateDevice(rec.id, (r) => {
    r.state = state;
    delete r.error;
    delete r.faultyFrom;
  });
  if (info && !info.live) {
    await dm.remove(ctx, rec.dmName, { retry: true });
    info = undefined;
  }
  if (info?.suspended) {
    await retry(ctx, SUSPEND_RETRY, () => dm.resume(ctx, rec.dmName));
    await set('Activated');
    return 'resumed';
  }
  if (info) {
    const wasShort = (info.table ?? await dm.thinTable(ctx, rec.dmName)).lengthSectors * 512 < rec.sizeBytes;
    if (wasShort) await devices.applySize(ctx, rec);
    if (rec.state === 'Activated') return wasShort ? 'resized' : undefined;
    await set('Activated');
    return 'settled';
  }
  if (from === 'Activated' || from === 'Resumed') {
    await set('Deactivated');
    await devices.activate(ctx, rec.id);
    return 'reactivated';
  }
  if (rec.state === 'Created' || rec.state === 'Deactivated') return undefined;
  await set('Deactivated');
  return 'settled';
}

/**
 * Thin devices of this pool that no record knows: live ones from their tables, and, when the
 * metadata could be read, inactive ones too (those have no dm name). `tables`, `records` and
 * `ids` were read before the repairs; the records are read again after them.
 */
async function findOrphans(devices: Devices, tables: Map<string, ThinTable>, records: DeviceRecord[], ids?: Set<number>): Promise<ReconcileReport['orphans']> {
  const { pool } = devices;
  // Known: a record from before the repairs (a rolled-back create took its device with it,
  // but its table was read first) or after them (one an RPC made meanwhile).
  const known = new Set([...records, ...await devices.list()].map((r) => r.deviceId));
  const orphans = new Map<number, ReconcileReport['orphans'][number]>();
  for (const [dmName, t] of tables) {
    if (t.poolDev !== pool.devNo && t.poolDev !== pool.deps.dm.devicePath(pool.name)) continue;
    if (!known.has(t.deviceId)) orphans.set(t.deviceId, { dmName, deviceId: t.deviceId });
  }
  for (const id of ids ?? []) if (!known.has(id) && !orphans.has(id)) orphans.set(id, { deviceId: id });
  for (const id of orphans.keys()) pool.claimId(id);
  return [...orphans.values()].sort((a, b) => a.deviceId - b.deviceId);
}
