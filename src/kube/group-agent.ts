import type { Logger } from '../observability/log.ts';
import type { GroupSnapshots, NewGroupMember } from '../pool/group.ts';
import { failureOf } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import { crashScope } from '../system/crashpoint.ts';
import type { KeyedMutex } from '../system/lock.ts';
import type { CrdStore } from './crd-store.ts';
import type { EventRecorder } from './events.ts';
import { toGroupRecord, toRecord } from './map.ts';
import type { ThinGroupSnapshot, ThinSnapshot } from './types.ts';
import { dmNameOf, FINALIZER, isUnclaimedGroup, KIND, PLURAL } from './types.ts';
import { apiMessage } from './api.ts';

export interface GroupWorkOptions {
  store: CrdStore;
  groups: GroupSnapshots;
  locks: KeyedMutex;
  events: EventRecorder;
  log: Logger;
  node: string;
  ctx: () => OpContext;
}

/** What the agent must do for this version of a ThinGroupSnapshot, if anything. */
export function groupActionFor(cr: ThinGroupSnapshot, node: string): 'make' | 'delete' | undefined {
  if (cr.spec?.nodeName !== node) return undefined;
  if (cr.metadata.deletionTimestamp) return 'delete';
  return isUnclaimedGroup(cr) ? 'make' : undefined;
}

const involved = (cr: { kind: string; metadata: { name: string; uid?: string } }) => ({ kind: cr.kind, name: cr.metadata.name, uid: cr.metadata.uid });

/**
 * The node agent's work on ThinGroupSnapshots: the controller creates the group and its member
 * ThinSnapshots (spec.group, owned by the group); the agent holds a finalizer on each, then makes
 * every member in one freeze (GroupSnapshots), or deletes them all when the group is deleted.
 * Work on a group holds the locks of the group, its members and its sources, sorted.
 */
export class GroupWork {
  private readonly o: GroupWorkOptions;
  constructor(o: GroupWorkOptions) { this.o = o; }

  async handle(name: string): Promise<void> {
    const peek = await this.o.store.readGroup(name);
    if (!peek) return;
    await this.o.locks.runAll([name, ...peek.spec.members, ...peek.spec.sourceVolumes], async () => {
      const cr = await this.o.store.readGroup(name); // read under the locks: the version to act on
      const action = cr && groupActionFor(cr, this.o.node);
      if (action === 'make') await crashScope(`group/${name}`, () => this.make(cr!));
      if (action === 'delete') await crashScope(`group-delete/${name}`, () => this.finish(cr!));
    });
  }

  private async make(cr: ThinGroupSnapshot): Promise<void> {
    const { store } = this.o;
    // The CRD cannot hold this rule: kube-apiserver 1.24's CEL estimator refuses size() of two lists.
    if (cr.spec.members.length !== cr.spec.sourceVolumes.length) {
      await this.reportFailure(cr, 'CreateFailed', new Error(`${cr.spec.members.length} members for ${cr.spec.sourceVolumes.length} source volumes: one member ThinSnapshot per source volume`));
      return;
    }
    try {
      if (!cr.metadata.finalizers?.includes(FINALIZER)) cr = await store.setFinalizer(cr, true);
      const crs = await Promise.all(cr.spec.members.map((name) => store.readDevice(name) as Promise<ThinSnapshot | undefined>));
      const missing = cr.spec.members.filter((_, i) => crs[i]?.kind !== KIND.snapshot || crs[i]!.spec.group !== cr.metadata.name);
      // The controller creates the members right after the group: each one's arrival queues the group again.
      if (missing.length > 0) {
        this.o.log.debug('group snapshot waits for its members', { group: cr.metadata.name, missing });
        return;
      }
      const members: NewGroupMember[] = [];
      for (const [i, name] of cr.spec.members.entries()) {
        let m = crs[i]!;
        if (!m.metadata.finalizers?.includes(FINALIZER)) m = await store.setFinalizer(m, true);
        members.push({ snapshotId: name, sourceId: cr.spec.sourceVolumes[i]!, dmName: dmNameOf(m.metadata.uid ?? name), meta: toRecord(m).meta });
      }
      await this.o.groups.create(this.o.ctx(), { id: cr.metadata.name, members, meta: toGroupRecord(cr).meta });
      this.o.events.normal(involved(cr), 'GroupSnapshotCreated', `${members.length} thin snapshots cut in one freeze in pool ${this.o.groups.devices.pool.name}`);
    } catch (err) {
      await this.reportFailure(cr, 'CreateFailed', err);
      throw err;
    }
  }

  /** A deleting group: every member's device, then the group's finalizer (GroupSnapshots.remove ends in deleteGroup). */
  private async finish(cr: ThinGroupSnapshot): Promise<void> {
    try {
      if (isUnclaimedGroup(cr)) {
        if (cr.metadata.finalizers?.includes(FINALIZER)) await this.o.store.setFinalizer(cr, false);
        return;
      }
      await this.o.groups.remove(this.o.ctx(), cr.metadata.name);
      this.o.events.normal(involved(cr), 'GroupSnapshotDeleted', `${cr.spec.members.length} thin snapshots deleted`);
    } catch (err) {
      await this.reportFailure(cr, 'DeleteFailed', err);
      throw err;
    }
  }

  /** The failure's code and message into the group's status (the controller returns them), and an Event. */
  private async reportFailure(cr: ThinGroupSnapshot, reason: string, err: unknown): Promise<void> {
    const f = failureOf(err);
    this.o.events.warning(involved(cr), reason, `${f.code}: ${f.message}`);
    const { store } = this.o;
    try {
      await store.retryWrite(`recording failure of ${cr.metadata.name}`, async () => {
        const cur = await store.readGroup(cr.metadata.name);
        if (!cur) return undefined;
        const state = isUnclaimedGroup(cur) ? 'Pending' : cur.status?.state;
        return store.putStatus(PLURAL.group, cur, { ...cur.status, state, code: f.code, message: f.message, updatedAt: new Date().toISOString() });
      });
    } catch (e) {
      this.o.log.error('could not record failure in status', { object: cr.metadata.name, error: apiMessage(e) });
    }
  }
}
