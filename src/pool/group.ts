import { isDmError, type DmErrorKind } from '../devmapper/types.ts';
import { errorMessage, failedPrecondition } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import { crashScope } from '../system/crashpoint.ts';
import type { DeviceRecord, GroupRecord, GroupStore } from '../state/types.ts';
import type { Devices } from './devices.ts';
import { toStatus } from '../status.ts';
import { suspendForSnapshot } from './late-suspend.ts';
import { retry, SUSPEND_RETRY } from './retry.ts';
import { USABLE } from './transition.ts';

export interface NewGroupMember {
  snapshotId: string;
  sourceId: string;
  dmName: string;
  meta: Record<string, string>;
}

export interface NewGroup {
  id: string;
  /** One per source volume; the caller has refused duplicates. */
  members: NewGroupMember[];
  meta: Record<string, string>;
}

export interface GroupView { group: GroupRecord; members: DeviceRecord[] }

/** How far a create got, for its own undo: members whose create_snap returned, the one in flight, and why it stopped. */
interface Progress { sent: Set<string>; sending?: string; cause?: unknown }

/** Failures after which the kernel certainly did not create the snapshot (as for a single one). */
const NOT_MADE: readonly DmErrorKind[] = ['exists', 'no_space', 'invalid', 'no_data', 'unsupported', 'busy'];

const now = () => new Date().toISOString();

/**
 * Group snapshots: one instant across several volumes of this pool. The group's record is
 * written (Creating) before anything else, the members' records (Creating) next; then, in one
 * section of the pool's message lock, every live source is suspended (with flush, so each
 * filesystem is frozen clean), a create_snap is sent for each member, and every source is
 * resumed. Only then is the group Ready, and only then are its members Created: a snapshot
 * of a group nobody was told of is never listed. A restart finishes a Ready group's members and
 * undoes a Creating one entirely (reconcileGroups); the suspended sources are the device
 * reconcile's, as for a single snapshot.
 */
export class GroupSnapshots {
  readonly devices: Devices;
  readonly groups: GroupStore;
  constructor(devices: Devices, groups: GroupStore) {
    this.devices = devices;
    this.groups = groups;
  }

  private get pool() { return this.devices.pool; }
  private get store() { return this.pool.deps.store; }
  private get log() { return this.pool.deps.log; }

  async view(id: string): Promise<GroupView | undefined> {
    const group = await this.groups.getGroup(id);
    if (!group) return undefined;
    const members = await Promise.all(group.members.map((m) => this.store.getDevice(m.snapshotId)));
    return { group, members: members.filter((m): m is DeviceRecord => m !== undefined) };
  }

  create(ctx: OpContext, spec: NewGroup): Promise<GroupView> {
    return crashScope(`group/${spec.id}`, () => this.createNow(ctx, spec));
  }

  private async createNow(ctx: OpContext, spec: NewGroup): Promise<GroupView> {
    const existing = await this.groups.getGroup(spec.id);
    if (existing?.state === 'Ready') return this.finish(existing);
    if (existing) await this.undo(ctx, existing); // an earlier attempt whose undo failed
    const origins = await Promise.all(spec.members.map((m) => this.devices.get(m.sourceId)));
    for (const o of origins) {
      if (!USABLE.has(o.state)) throw failedPrecondition(`source ${o.id} is ${o.state}${o.error ? ` (${o.error})` : ''}`);
    }
    const [live] = await Promise.all([
      Promise.all(origins.map((o) => this.devices.isLive(ctx, o))),
      this.pool.ensureSnapshotable(ctx), // before any record and any suspend
    ]);
    const t = now();
    const group = await this.groups.putGroup({
      id: spec.id, state: 'Creating', members: spec.members.map(({ snapshotId, sourceId }) => ({ snapshotId, sourceId })),
      meta: spec.meta, createdAt: t, updatedAt: t,
    });
    const progress: Progress = { sent: new Set() };
    try {
      const recs: DeviceRecord[] = [];
      for (const [i, m] of spec.members.entries()) recs.push(await this.memberRecord(m, origins[i]!));
      await this.cut(ctx, recs, origins, live, progress);
      return this.finish(await this.groups.putGroup({ ...group, state: 'Ready', updatedAt: now() }));
    } catch (err) {
      await this.undo(ctx, group, { ...progress, cause: err }).catch((e: unknown) => {
        this.log.error('group snapshot could not be undone; reconcile will retry', { group: spec.id, error: errorMessage(e) });
      });
      throw (await this.pool.refusal(ctx, err)) ?? toStatus(err, `creating group snapshot ${spec.id}`);
    }
  }

  private async memberRecord(m: NewGroupMember, origin: DeviceRecord): Promise<DeviceRecord> {
    const deviceId = this.pool.allocateId();
    const t = now();
    try {
      return await this.store.createDevice({
        id: m.snapshotId, dmName: m.dmName, kind: 'snapshot', sizeBytes: origin.sizeBytes, meta: m.meta, origin: origin.id,
        deviceId, state: 'Creating', createdAt: t, updatedAt: t,
      });
    } catch (err) {
      this.pool.releaseId(deviceId);
      throw err;
    }
  }

  /**
   * The instant: suspend every live source (fixed order: by id), snapshot each member, resume
   * every source. One observation of the group's freeze window, first suspend to last resume.
   */
  private async cut(ctx: OpContext, recs: DeviceRecord[], origins: DeviceRecord[], live: boolean[], progress: Progress): Promise<void> {
    const { metrics } = this.pool.deps;
    const frozen = origins.filter((_, i) => live[i]).sort((a, b) => (a.id < b.id ? -1 : 1));
    const suspended: DeviceRecord[] = [];
    let endWindow: (() => number) | undefined;
    const msgs = recs.map((r, i) => `create_snap ${r.deviceId} ${origins[i]!.deviceId}`);
    await this.pool.commitAll(ctx, msgs, {
      during: async () => {
        for (const o of frozen) await this.store.updateDevice(o.id, (r) => { r.state = 'Suspending'; r.updatedAt = now(); });
        endWindow = metrics.groupSuspendWindow.startTimer();
        for (const o of frozen) {
          await suspendForSnapshot(this.pool, ctx, o);
          suspended.push(o);
        }
      },
      sending: (i) => { progress.sending = recs[i]!.id; },
      sent: (i) => { progress.sent.add(recs[i]!.id); },
      after: () => this.resumeAll(ctx, suspended, frozen, () => endWindow?.()),
    });
  }

  /**
   * Resumes every suspended source whatever happened, then records the sources `marked`
   * Suspending as Activated again; one that will not resume is Faulty, which reconcile retries.
   */
  private async resumeAll(ctx: OpContext, suspended: DeviceRecord[], marked: DeviceRecord[], resumed: () => void): Promise<void> {
    const { dm, log } = this.pool.deps;
    const failed = new Map<string, unknown>();
    for (const o of suspended) {
      await retry(ctx, SUSPEND_RETRY, () => dm.resume(ctx, o.dmName)).catch((err: unknown) => { failed.set(o.id, err); });
    }
    if (suspended.length > 0) resumed(); // the freeze ends here; the bookkeeping below is not part of it
    for (const o of marked) {
      const err = failed.get(o.id);
      if (err === undefined) {
        await this.store.updateDevice(o.id, (r) => { if (r.state === 'Suspending') r.state = 'Activated'; r.updatedAt = now(); });
        continue;
      }
      log.error('group member left suspended after snapshot; reconcile will retry the resume', { volume: o.id, error: errorMessage(err) });
      await this.devices.markFaulty(o.id, 'Resuming', `resuming after group snapshot: ${errorMessage(err)}`);
    }
    const first = failed.values().next();
    if (!first.done) throw first.value;
  }

  /** A Ready group's members become ordinary snapshots (Created); idempotent. */
  private async finish(group: GroupRecord): Promise<GroupView> {
    const members: DeviceRecord[] = [];
    for (const m of group.members) {
      const rec = await this.store.updateDevice(m.snapshotId, (r) => {
        if (r.state === 'Creating') r.state = 'Created';
        r.updatedAt = now();
      });
      members.push(rec);
    }
    return { group, members };
  }

  /**
   * Deletes every member, then the group's record. With `progress` (the create's own undo), a
   * member whose create_snap was never sent, or was refused before the kernel acted, only loses
   * its record (and one refused with EEXIST keeps its id from reuse: another device holds it).
   * Without it (a restart), every member gets a delete, which ENODATA answers for one never made.
   */
  private async undo(ctx: OpContext, group: GroupRecord, progress?: Progress): Promise<void> {
    for (const m of [...group.members].reverse()) {
      const rec = await this.store.getDevice(m.snapshotId);
      if (!rec) continue;
      const inFlight = progress?.sending === rec.id;
      const notMade = progress && !progress.sent.has(rec.id) && (!inFlight || NOT_MADE.some((k) => isDmError(progress.cause, k)));
      if (!notMade) {
        await this.devices.remove(ctx, rec.id);
        continue;
      }
      await this.store.deleteDevice(rec.id);
      if (inFlight && isDmError(progress.cause, 'exists')) this.pool.claimId(rec.deviceId);
      else this.pool.releaseId(rec.deviceId);
    }
    await this.groups.deleteGroup(group.id);
  }

  /** Deletes a group and all its members; idempotent. A member in use refuses before anything is deleted. */
  remove(ctx: OpContext, id: string): Promise<void> {
    return crashScope(`group-delete/${id}`, async () => {
      const group = await this.groups.getGroup(id);
      if (!group) return;
      for (const m of group.members) {
        const rec = await this.devices.find(m.snapshotId);
        const info = rec && await this.devices.info(ctx, rec);
        if (info && info.openCount > 0) throw failedPrecondition(`group snapshot ${id}: member ${m.snapshotId} is in use (device ${info.name} is open ${info.openCount} time(s))`);
      }
      const removing = group.state === 'Removing' ? group : await this.groups.putGroup({ ...group, state: 'Removing', updatedAt: now() });
      await this.undo(ctx, removing);
    });
  }

  /**
   * A restart's (or a periodic pass's) repair of one group left mid-operation: Ready finishes
   * its members, Creating is undone whole, Removing is finished.
   */
  async repair(ctx: OpContext, group: GroupRecord): Promise<'finished' | 'rolled_back' | 'deleted' | undefined> {
    if (group.state === 'Ready') {
      if (!(await this.unfinished(group))) return undefined;
      await this.finish(group);
      return 'finished';
    }
    await this.undo(ctx, group);
    return group.state === 'Creating' ? 'rolled_back' : 'deleted';
  }

  /** A Ready group with a member still recorded Creating (a crash came between the two writes). */
  async unfinished(group: GroupRecord): Promise<boolean> {
    const members = await Promise.all(group.members.map((m) => this.store.getDevice(m.snapshotId)));
    return members.some((r) => r?.state === 'Creating');
  }
}

export type GroupRepair = NonNullable<Awaited<ReturnType<GroupSnapshots['repair']>>>;

/**
 * Runs before the device pass of a reconcile, so that a Ready group's members still recorded
 * Creating are finished, not rolled back as half-made snapshots. With `exclusive` (RPCs may be
 * running) a group is repaired holding its lock, which the group's RPCs hold, and only if its
 * record did not change since it was read.
 */
export async function reconcileGroups(ctx: OpContext, gs: GroupSnapshots, exclusive?: (id: string, fn: () => Promise<void>) => Promise<boolean>): Promise<{
  repaired: Array<{ id: string; from: GroupRecord['state']; action: GroupRepair }>; faulty: Array<{ id: string; error: string }>;
}> {
  const out = { repaired: [] as Array<{ id: string; from: GroupRecord['state']; action: GroupRepair }>, faulty: [] as Array<{ id: string; error: string }> };
  const { log } = gs.devices.pool.deps;
  for (const g of await gs.groups.listGroups()) {
    if (g.state === 'Ready' && !(await gs.unfinished(g))) continue;
    const run = async () => {
      const cur = await gs.groups.getGroup(g.id);
      if (!cur || cur.revision !== g.revision) return;
      try {
        const action = await gs.repair(ctx, cur);
        if (action) out.repaired.push({ id: g.id, from: g.state, action });
        if (action) log.warn('reconcile repaired group snapshot', { group: g.id, from: g.state, action });
      } catch (err) {
        out.faulty.push({ id: g.id, error: errorMessage(err) });
        log.error('reconcile could not repair group snapshot', { group: g.id, state: g.state, error: errorMessage(err) });
      }
    };
    if (!exclusive) await run();
    else if (!(await exclusive(g.id, run))) log.debug('reconcile skipped a group snapshot an RPC is working on', { group: g.id });
  }
  return out;
}
