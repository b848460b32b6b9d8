import type { CustomObjectsApi } from '@kubernetes/client-node';
import { applyMutation, jsonCopy } from '../state/records.ts';
import { byId, type DeviceRecord, type GroupRecord, type GroupStore, type Mutation, type PoolRecord, type StateStore, StoreError } from '../state/types.ts';
import { toGroupRecord, toRecord, toStatus } from './map.ts';
import type { DeviceCr, ThinGroupSnapshot, ThinPoolCr } from './types.ts';
import { API_VERSION, FINALIZER, GROUP, isUnclaimed, isUnclaimedGroup, KIND, NODE_LABEL, PLURAL, pluralOf, VERSION } from './types.ts';
import { step } from '../system/crashpoint.ts';
import { apiMessage, isConflict, isNotFound } from './api.ts';

/** Read-modify-write attempts before a record that keeps changing underneath is given up on. */
const MAX_ATTEMPTS = 50;

type Plural = (typeof PLURAL)[keyof typeof PLURAL];

/**
 * The StateStore of one node's pool, kept in custom resources: a device record is the
 * status of the node's ThinVolume/ThinSnapshot of the same name, the pool record the
 * status of the node's ThinPool. Every write goes through the status subresource with the
 * resourceVersion it was computed from; a 409 re-reads and re-applies the mutation, so a
 * concurrent writer (the controller, an operator, another agent instance) is never overwritten.
 */
export class CrdStore implements StateStore, GroupStore {
  readonly api: CustomObjectsApi;
  readonly node: string;
  readonly poolName: string;

  /** How the pool is made, written into a new ThinPool's spec for operators. */
  readonly poolSpec: Partial<ThinPoolCr['spec']>;

  /**
   * Per resource, the newest resourceVersion of this store's own writes and of the own objects
   * its lists returned: what its lists of that resource may not be older than. Per resource,
   * because each resource has its own watch cache, which learns of a version only from that
   * resource's events (or etcd's progress notifications, seconds apart): a list of ThinVolumes
   * not older than a ThinPool write would wait for one, up to the apiserver's 3 s, and then be
   * refused.
   */
  private readonly seen = new Map<string, NewestVersion>();

  /** `listBounds`: what listBounds() returned in the agent's last incarnation, when it stopped cleanly. */
  constructor(api: CustomObjectsApi, node: string, poolName: string, poolSpec: Partial<ThinPoolCr['spec']> = {}, listBounds: Record<string, string> = {}) {
    this.api = countingWrites(api, (plural, out) => this.seenOf(plural).note(out));
    for (const [plural, rv] of Object.entries(listBounds)) this.seenOf(plural).noteVersion(rv);
    this.node = node;
    this.poolName = poolName;
    this.poolSpec = poolSpec;
  }

  async read<T>(plural: Plural, name: string): Promise<T | undefined> {
    try {
      return await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural, name }) as T;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw new StoreError('io', `reading ${plural}/${name}: ${apiMessage(err)}`, { cause: err });
    }
  }

  /** The CR behind a device id, if it belongs to this node. */
  async readDevice(id: string): Promise<DeviceCr | undefined> {
    const cr = await this.read<DeviceCr>(pluralOf(id), id);
    return cr && cr.spec?.nodeName === this.node ? cr : undefined;
  }

  /** PUT of the status subresource, conditional on the resourceVersion in `cr`. */
  async putStatus<T extends { metadata: { name: string } }>(plural: Plural, cr: T, status: unknown): Promise<T> {
    const body = { ...cr, status };
    return await this.api.replaceClusterCustomObjectStatus({ group: GROUP, version: VERSION, plural, name: cr.metadata.name, body }) as T;
  }

  /** Re-reads and re-applies `change` until its write wins; `change` returns undefined to stop. */
  async retryWrite<T>(what: string, attempt: () => Promise<T | undefined>): Promise<T | undefined> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      try {
        return await attempt();
      } catch (err) {
        if (err instanceof StoreError) throw err;
        if (isConflict(err)) continue;
        if (isNotFound(err)) throw new StoreError('not_found', `${what}: gone`, { cause: err });
        throw new StoreError('io', `${what}: ${apiMessage(err)}`, { cause: err });
      }
    }
    throw new StoreError('conflict', `${what}: gave up after ${MAX_ATTEMPTS} conflicting writes`);
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const cr = await this.readDevice(id);
    return cr && !isUnclaimed(cr) ? toRecord(cr) : undefined;
  }

  /**
   * This node's objects of `plural`. After the first list, from the apiserver's watch cache but
   * never older than the newest version this store wrote or saw (NotOlderThan): a quorum list
   * reads and decodes every object of the cluster from etcd to keep one node's, which each
   * agent's periodic reconcile did several times a minute (issue 25). Its own writes are what
   * the reconcile must see; others' changes reach the agent through its watches anyway. A cache
   * that cannot answer (too far behind: 504; disabled) gets the quorum list.
   */
  private async listOwn<T extends { spec?: { nodeName?: string } }>(plural: Plural): Promise<T[]> {
    const base = { group: GROUP, version: VERSION, plural, labelSelector: `${NODE_LABEL}=${this.node}` };
    type List = { items: T[]; metadata?: { resourceVersion?: string } };
    const since = this.seenOf(plural).value;
    const cached = since === undefined ? undefined
      : await (this.api.listClusterCustomObject({ ...base, resourceVersion: since, resourceVersionMatch: 'NotOlderThan' }) as Promise<List>).catch(() => undefined);
    // Not the list's version: a quorum list answers with etcd's current revision, which other
    // resources' writes move on, and which this resource's cache would only reach at its next event.
    const list = cached ?? await this.api.listClusterCustomObject(base) as List;
    const own = list.items.filter((cr) => cr.spec?.nodeName === this.node);
    // Each item's version is a revision of this resource, which its watch cache holds from that
    // item's own event: from the first quorum list on, lists are cached (a restarted agent's start
    // listed every object of the cluster from etcd five times, issue 25), and never go back in
    // time past what this list showed.
    for (const cr of own) this.seenOf(plural).note(cr);
    return own;
  }

  /** Per resource, the version its lists may not be older than (for list-bounds.ts). */
  listBounds(): Record<string, string> {
    return Object.fromEntries([...this.seen].flatMap(([plural, v]) => (v.value === undefined ? [] : [[plural, v.value]])));
  }

  private seenOf(plural: string): NewestVersion {
    let v = this.seen.get(plural);
    if (!v) this.seen.set(plural, v = new NewestVersion());
    return v;
  }

  async listCrs(plural: typeof PLURAL.volume | typeof PLURAL.snapshot): Promise<DeviceCr[]> {
    try {
      return await this.listOwn<DeviceCr>(plural);
    } catch (err) {
      throw new StoreError('io', `listing ${plural}: ${apiMessage(err)}`, { cause: err });
    }
  }

  async listDevices(): Promise<DeviceRecord[]> {
    const crs = [...await this.listCrs(PLURAL.volume), ...await this.listCrs(PLURAL.snapshot)];
    return crs.filter((cr) => !isUnclaimed(cr)).map(toRecord).sort(byId);
  }

  /**
   * Claims the CR the controller made: the agent's record starts when it writes a state into
   * an unclaimed CR's status. There is no record without a CR, so a missing CR is an error.
   */
  async createDevice(record: DeviceRecord): Promise<DeviceRecord> {
    const out = await this.retryWrite(`claiming ${record.id}`, async () => {
      const cr = await this.readDevice(record.id);
      if (!cr) throw new StoreError('io', `no ${KIND[record.kind]} ${record.id} on node ${this.node}: the controller creates the custom resource first`);
      if (!isUnclaimed(cr)) throw new StoreError('exists', `device record ${record.id} already exists (state ${cr.status?.state})`);
      const draft = jsonCopy(record);
      return toRecord(await this.putStatus(pluralOf(record.id), cr, toStatus(cr, draft)));
    });
    return out!;
  }

  async updateDevice(id: string, mutate: Mutation<DeviceRecord>): Promise<DeviceRecord> {
    const out = await this.retryWrite(`updating ${id}`, async () => {
      const cr = await this.readDevice(id);
      if (!cr || isUnclaimed(cr)) throw new StoreError('not_found', `device record ${id} not found`);
      const next = applyMutation(toRecord(cr), mutate);
      return toRecord(await this.putStatus(pluralOf(id), cr, toStatus(cr, next)));
    });
    return out!;
  }

  /**
   * Forgets the device: the CR goes back to Pending (a failed create leaves it for a retry)
   * and, when the CR is being deleted, our finalizer goes, which lets the API server delete it.
   */
  async deleteDevice(id: string): Promise<void> {
    const plural = pluralOf(id);
    try {
      let ended = false;
      await this.retryWrite(`releasing ${id}`, async () => {
        const cr = await this.readDevice(id);
        if (!cr || isUnclaimed(cr)) return undefined;
        // Ours the last finalizer of a deleting CR: its removal ends the object, so a Pending
        // status first would be a write for nothing (issue 25). With another finalizer left the
        // object outlives ours, and must not claim the thin id any more.
        if (cr.metadata.deletionTimestamp && sameList(cr.metadata.finalizers, [FINALIZER])) {
          ended = true;
          return this.setFinalizer(cr, false);
        }
        // Back to unclaimed: no device, so no device size either (a CO retry compares the spec's).
        const { deviceId: _d, faultyFrom: _f, readyToUse: _r, sizeBytes: _s, ...rest } = (cr.status ?? {}) as Record<string, unknown>;
        return this.putStatus(plural, cr, { ...rest, state: 'Pending', updatedAt: new Date().toISOString() });
      });
      if (ended) return;
      await this.retryWrite(`removing the finalizer of ${id}`, async () => {
        const cr = await this.readDevice(id);
        if (!cr || !cr.metadata.deletionTimestamp || !cr.metadata.finalizers?.includes(FINALIZER)) return undefined;
        return this.setFinalizer(cr, false);
      });
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'not_found') return;
      throw err;
    }
  }

  /** PUT of the object with our finalizer added or removed (conditional on resourceVersion). */
  async setFinalizer<T extends DeviceCr | ThinGroupSnapshot>(cr: T, present: boolean): Promise<T> {
    const others = (cr.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    const body = { ...cr, metadata: { ...cr.metadata, finalizers: present ? [...others, FINALIZER] : others } };
    const plural = cr.kind === KIND.group ? PLURAL.group : pluralOf(cr.metadata.name);
    return await this.api.replaceClusterCustomObject({ group: GROUP, version: VERSION, plural, name: cr.metadata.name, body }) as T;
  }

  /** The ThinGroupSnapshot of this node named `id`. */
  async readGroup(id: string): Promise<ThinGroupSnapshot | undefined> {
    const cr = await this.read<ThinGroupSnapshot>(PLURAL.group, id);
    return cr && cr.spec?.nodeName === this.node ? cr : undefined;
  }

  /** A group record is the status of a claimed ThinGroupSnapshot, as a device record is a ThinVolume's. */
  async getGroup(id: string): Promise<GroupRecord | undefined> {
    const cr = await this.readGroup(id);
    return cr && !isUnclaimedGroup(cr) ? toGroupRecord(cr) : undefined;
  }

  async listGroupCrs(): Promise<ThinGroupSnapshot[]> {
    try {
      return await this.listOwn<ThinGroupSnapshot>(PLURAL.group);
    } catch (err) {
      // No ThinGroupSnapshot CRD (an upgrade where `helm upgrade` left crds/ as they were): no group
      // can exist, and the node must still serve its volumes.
      if (isNotFound(err)) return [];
      throw new StoreError('io', `listing ${PLURAL.group}: ${apiMessage(err)}`, { cause: err });
    }
  }

  async listGroups(): Promise<GroupRecord[]> {
    return (await this.listGroupCrs()).filter((cr) => !isUnclaimedGroup(cr)).map(toGroupRecord).sort(byId);
  }

  /** Writes the state into the CR's status (the first write claims it); the members are the spec's. */
  async putGroup(record: GroupRecord): Promise<GroupRecord> {
    const out = await this.retryWrite(`writing group ${record.id}`, async () => {
      const cr = await this.readGroup(record.id);
      if (!cr) throw new StoreError('io', `no ${KIND.group} ${record.id} on node ${this.node}: the controller creates the custom resource first`);
      const { code: _c, message: _m, ...rest } = cr.status ?? {};
      const status = { ...rest, state: record.state, readyToUse: record.state === 'Ready', updatedAt: new Date().toISOString() };
      return toGroupRecord(await this.putStatus(PLURAL.group, cr, status));
    });
    return out!;
  }

  /** Back to unclaimed (Pending), and our finalizer goes when the CR is being deleted; as deleteDevice. */
  async deleteGroup(id: string): Promise<void> {
    try {
      await this.retryWrite(`releasing group ${id}`, async () => {
        const cr = await this.readGroup(id);
        if (!cr || isUnclaimedGroup(cr)) return undefined;
        return this.putStatus(PLURAL.group, cr, { ...cr.status, state: 'Pending', readyToUse: false, updatedAt: new Date().toISOString() });
      });
      await this.retryWrite(`removing the finalizer of group ${id}`, async () => {
        const cr = await this.readGroup(id);
        if (!cr || !cr.metadata.deletionTimestamp || !cr.metadata.finalizers?.includes(FINALIZER)) return undefined;
        return this.setFinalizer(cr, false);
      });
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'not_found') return;
      throw err;
    }
  }

  async readPool(): Promise<ThinPoolCr> {
    const existing = await this.read<ThinPoolCr>(PLURAL.pool, this.node);
    if (existing) return existing;
    const body: ThinPoolCr = { apiVersion: API_VERSION, kind: KIND.pool, metadata: { name: this.node }, spec: { ...this.poolSpec, nodeName: this.node, poolName: this.poolName } };
    try {
      return await this.api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL.pool, body }) as ThinPoolCr;
    } catch (err) {
      if (isConflict(err)) return (await this.read<ThinPoolCr>(PLURAL.pool, this.node))!;
      throw new StoreError('io', `creating thinpools/${this.node}: ${apiMessage(err)}`, { cause: err });
    }
  }

  /** Read-modify-write of the ThinPool status. */
  async updatePoolStatus(change: (s: NonNullable<ThinPoolCr['status']>) => NonNullable<ThinPoolCr['status']>): Promise<ThinPoolCr> {
    const out = await this.retryWrite(`updating thinpools/${this.node} status`, async () => {
      const cr = await this.readPool();
      return this.putStatus(PLURAL.pool, cr, change(jsonCopy(cr.status ?? {})));
    });
    return out!;
  }

  async getPool(): Promise<PoolRecord | undefined> {
    const cr = await this.read<ThinPoolCr>(PLURAL.pool, this.node);
    const tx = cr?.status?.transactionId;
    if (!cr || tx === undefined) return undefined;
    const held = cr.status?.metadataSnapshotHeld ? { metadataSnapHeld: true } : {};
    return { name: cr.status?.poolName ?? this.poolName, transactionId: tx, ...held, updatedAt: cr.status?.lastReconcileTime ?? '', revision: cr.metadata.resourceVersion };
  }

  async updatePool(mutate: (current: PoolRecord | undefined) => PoolRecord): Promise<PoolRecord> {
    let rec: PoolRecord | undefined;
    const cr = await this.updatePoolStatus((s) => {
      const current = s.transactionId === undefined ? undefined
        : { name: s.poolName ?? this.poolName, transactionId: s.transactionId, ...(s.metadataSnapshotHeld ? { metadataSnapHeld: true } : {}), updatedAt: '' };
      rec = mutate(current);
      return { ...s, poolName: rec.name, transactionId: rec.transactionId, metadataSnapshotHeld: rec.metadataSnapHeld === true ? true : undefined };
    });
    return { ...rec!, revision: cr.metadata.resourceVersion };
  }

  async close(): Promise<void> { /* nothing held: every call is a fresh request */ }
}

function sameList(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return (a ?? []).length === b.length && b.every((x, i) => a![i] === x);
}

/**
 * The highest resourceVersion noted. The apiserver's are etcd revisions, decimal and growing;
 * they are compared only when they read as such, and anything else is not noted (the lists
 * then stay quorum reads).
 */
class NewestVersion {
  private max: bigint | undefined;

  note(obj: unknown): void {
    this.noteVersion((obj as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion);
  }

  noteVersion(rv: unknown): void {
    if (typeof rv !== 'string' || !/^[1-9][0-9]{0,30}$/.test(rv)) return;
    if (this.max === undefined || BigInt(rv) > this.max) this.max = BigInt(rv);
  }

  get value(): string | undefined { return this.max?.toString(); }
}

/** Every write that reaches the API server is one step of the operation it belongs to. */
function countingWrites(api: CustomObjectsApi, written: (plural: string, out: unknown) => void): CustomObjectsApi {
  return new Proxy(api, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string' || !/^(create|replace|patch|delete)/.test(prop)) return v;
      return async (...args: unknown[]) => {
        const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        written(String((args[0] as { plural?: unknown } | undefined)?.plural), out);
        step(prop);
        return out;
      };
    },
  });
}
