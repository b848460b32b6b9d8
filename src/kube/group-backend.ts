import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { GroupBackend, GroupSnapshotView, NewGroupSnapshot } from '../controller/backend.ts';
import { csiNameOf } from '../volume/meta.ts';
import { CsiError, deadlineExceeded, notFound, unavailable } from '../errors.ts';
import { apiStatus, codeFromName } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import type { KubeBackend } from './backend.ts';
import { toGroupRecord } from './map.ts';
import type { DeviceCr, ThinGroupSnapshot, ThinSnapshot } from './types.ts';
import { API_VERSION, GROUP, isUnclaimed, isUnclaimedGroup, KIND, NODE_LABEL, PLURAL, VERSION } from './types.ts';
import { backoff, sleep } from '../system/delay.ts';
import { isConflict, isNotFound } from './api.ts';

/**
 * The controller's group snapshots in Kubernetes mode: a ThinGroupSnapshot, then one member
 * ThinSnapshot per source (spec.group, owned by the group), which the node agent makes all at
 * once; the call waits until the group and every member are settled. Deletion removes the group
 * first (the agent deletes every member's device with it), then the member objects.
 */
export class KubeGroupBackend implements GroupBackend {
  private readonly api: CustomObjectsApi;
  private readonly volumes: KubeBackend;
  private readonly poll = { baseMs: 50, maxMs: 1000, defaultWaitMs: 60_000 };

  constructor(api: CustomObjectsApi, volumes: KubeBackend) {
    this.api = api;
    this.volumes = volumes;
  }

  private async read<T>(plural: string, name: string): Promise<T | undefined> {
    try {
      return await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural, name }) as T;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw apiStatus(err, `reading ${plural}/${name}`);
    }
  }

  /** The group as the controller answers from it: Ready only when the group and every member are settled. */
  async getGroup(_ctx: OpContext, id: string): Promise<GroupSnapshotView | undefined> {
    const cr = await this.read<ThinGroupSnapshot>(PLURAL.group, id);
    if (!cr) return undefined;
    const group = toGroupRecord(cr);
    const members = await Promise.all(cr.spec.members.map((m) => this.volumes.get(_ctx, m)));
    const settled = members.filter((m): m is DeviceRecord => m !== undefined);
    if (group.state === 'Ready' && (settled.length < members.length || cr.metadata.deletionTimestamp)) group.state = 'Creating';
    return { group, members: settled };
  }

  async createGroup(ctx: OpContext, spec: NewGroupSnapshot): Promise<GroupSnapshotView> {
    const source = await this.read<DeviceCr>(PLURAL.volume, spec.members[0]!.sourceId);
    if (!source) throw notFound(`source volume ${spec.members[0]!.sourceId} does not exist`);
    const node = source.spec.nodeName;
    const deadline = ctx.deadline ?? Date.now() + this.poll.defaultWaitMs;
    const since = Date.now();
    for (;;) {
      const existing = await this.read<ThinGroupSnapshot>(PLURAL.group, spec.id);
      if (existing?.metadata.deletionTimestamp || (existing && isUnclaimedGroup(existing) && existing.status?.code)) {
        await this.removeGroup(ctx, spec.id); // being deleted, or a failed earlier attempt: start over
        continue;
      }
      const group = existing ?? await this.tryCreate(PLURAL.group, this.groupBody(spec, node));
      if (!group) continue;
      for (const m of spec.members) await this.tryCreate(PLURAL.snapshot, this.memberBody(m, spec, node, group));
      return this.waitReady(ctx, spec.id, deadline, since);
    }
  }

  private groupBody(spec: NewGroupSnapshot, node: string): ThinGroupSnapshot {
    return {
      apiVersion: API_VERSION, kind: KIND.group, metadata: { name: spec.id, labels: { [NODE_LABEL]: node } },
      spec: { nodeName: node, csiName: csiNameOf(spec), sourceVolumes: spec.members.map((m) => m.sourceId), members: spec.members.map((m) => m.snapshotId) },
    };
  }

  private memberBody(m: NewGroupSnapshot['members'][number], spec: NewGroupSnapshot, node: string, group: ThinGroupSnapshot): ThinSnapshot {
    const owner = { apiVersion: API_VERSION, kind: KIND.group, name: spec.id, uid: group.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
    return {
      apiVersion: API_VERSION, kind: KIND.snapshot,
      metadata: { name: m.snapshotId, labels: { [NODE_LABEL]: node }, ownerReferences: [owner] },
      spec: { nodeName: node, sourceVolume: m.sourceId, csiName: csiNameOf(m), group: spec.id },
    };
  }

  /** The created object, or undefined when it exists already (a concurrent or earlier attempt). */
  private async tryCreate<T>(plural: string, body: T): Promise<T | undefined> {
    try {
      return await this.api.createClusterCustomObject({ group: GROUP, version: VERSION, plural, body }) as T;
    } catch (err) {
      if (isConflict(err)) return undefined;
      throw apiStatus(err, `creating ${plural}`);
    }
  }

  /** Polls until the group and all its members are settled, the agent reports a failure (its code), or the deadline. */
  private async waitReady(ctx: OpContext, id: string, deadline: number, since: number): Promise<GroupSnapshotView> {
    for (let attempt = 0; ; attempt++) {
      const cr = await this.read<ThinGroupSnapshot>(PLURAL.group, id);
      if (!cr) throw notFound(`${PLURAL.group}/${id} was deleted while waiting for it`);
      const at = Date.parse(cr.status?.updatedAt ?? '');
      if (cr.status?.code && at >= since) throw new CsiError(codeFromName(cr.status.code), cr.status.message ?? 'the node agent reported a failure');
      const view = await this.getGroup(ctx, id);
      if (view?.group.state === 'Ready') return view;
      if (Date.now() >= deadline || ctx.signal?.aborted) {
        throw deadlineExceeded(`group snapshot ${id} on node ${cr.spec.nodeName} is not ready yet (state ${cr.status?.state ?? 'Pending'}); the node agent may be down`);
      }
      await sleep(Math.min(backoff(attempt, this.poll.baseMs, this.poll.maxMs), Math.max(1, deadline - Date.now())), ctx.signal);
    }
  }

  /** Deletes the group (the agent deletes every member's device, then drops its finalizer), then the member objects. */
  async removeGroup(ctx: OpContext, id: string): Promise<void> {
    const cr = await this.read<ThinGroupSnapshot>(PLURAL.group, id);
    const members = cr?.spec.members ?? [];
    if (cr) await this.volumes.remove(ctx, id); // a group id names a ThinGroupSnapshot
    for (const m of members) {
      const member = await this.read<DeviceCr>(PLURAL.snapshot, m);
      if (member && (member.spec as ThinSnapshot['spec']).group === id && !isUnclaimed(member)) {
        throw unavailable(`member ${m} of group snapshot ${id} still has a device; retry`);
      }
      await this.volumes.remove(ctx, m);
    }
  }
}
