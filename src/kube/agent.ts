import type { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { failedPrecondition } from '../errors.ts';
import type { Logger } from '../observability/log.ts';
import { formatBytes } from './quantity.ts';
import type { Devices } from '../pool/devices.ts';
import { backingShortfall } from '../pool/backing.ts';
import { GroupSnapshots } from '../pool/group.ts';
import { reconcile, type ReconcileReport } from '../pool/reconcile.ts';
import type { OpContext } from '../system/context.ts';
import { failureOf } from '../status.ts';
import { crashScope } from '../system/crashpoint.ts';
import { withTimeout } from '../system/context.ts';
import { KeyedMutex } from '../system/lock.ts';
import type { CrdStore } from './crd-store.ts';
import type { EventRecorder } from './events.ts';
import { toRecord } from './map.ts';
import { WorkQueue } from './queue.ts';
import { GroupWork, groupActionFor } from './group-agent.ts';
import type { DeviceCr, ThinGroupSnapshot, ThinPoolCr } from './types.ts';
import { dmNameOf, FINALIZER, FORCE_CLEANUP_ANNOTATION, GROUP, isUnclaimed, KIND, NODE_LABEL, PLURAL, pluralOf, REMOVE_ORPHANS_ANNOTATION, RETRY_ANNOTATION, VERSION } from './types.ts';
import { apiMessage, isNotFound, MERGE_PATCH } from './api.ts';
import { CrWatch } from './watch.ts';

export interface AgentOptions {
  kc: KubeConfig;
  api: CustomObjectsApi;
  node: string;
  store: CrdStore;
  devices: Devices;
  events: EventRecorder;
  log: Logger;
  /** Periodic reconcile + resync of every CR of the node. */
  resyncMs?: number;
  /**
   * How often a periodic reconcile also reads the pool's metadata (devices deleted behind the
   * driver's back, inactive orphans) and retries Faulty devices; default: every pass. The
   * start's pass never does, and the first pass after it always does.
   */
  metadataCheckMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  watchRestartBaseMs?: number;
  /** Bound on one object's work (kernel calls and API writes). */
  opTimeoutMs?: number;
  /**
   * The per-volume locks of this node's CSI server. The agent and the Node service both act on
   * a device (grow it, suspend it, delete it / activate it, deactivate it): sharing one lock per
   * id keeps them from interleaving on it.
   */
  locks?: KeyedMutex;
  /** Sees the ThinPool at each reconcile (its annotations ask for a growth). */
  onPool?: (cr: ThinPoolCr) => void;
}

const RECONCILE = 'reconcile';

/**
 * The node agent: turns this node's ThinVolumes/ThinSnapshots into thin devices and back,
 * and keeps the pool and the CRs agreeing. Every action starts from a fresh read of the CR
 * and of the kernel, so a replayed event or a restart never does anything twice.
 */
export class NodeAgent {
  readonly queue: WorkQueue;
  /** The backing shortfall last reported by an Event, so each change is reported once. */
  private shortfallReported: string | undefined;
  private readonly o: AgentOptions & Required<Pick<AgentOptions, 'resyncMs' | 'opTimeoutMs' | 'metadataCheckMs'>>;
  private readonly watches: CrWatch[];
  private timer: NodeJS.Timeout | undefined;
  lastReport: ReconcileReport | undefined;
  private readonly faultyReported = new Map<string, string>();
  readonly locks: KeyedMutex;
  /** Set once the startup reconcile is done: from then on, Node RPCs may run beside a reconcile. */
  private serving = false;
  /** When a reconcile last read the pool metadata (ms since the epoch); 0: not since the start. */
  private metadataCheckedAt = 0;
  private readonly groups: GroupSnapshots;
  private readonly groupWork: GroupWork;
  /**
   * Per object, the version its last failure record (reportFailure) made. That write's own watch
   * event is no new work: the queue's backoff brings the object back. Taken for work, it made a
   * device that cannot be deleted (held open) a loop of a read, a delete attempt and a status
   * write, hundreds a minute (found in the real cluster: a staging mount the kubelet leaked).
   */
  private readonly failureEchoes = new Map<string, string>();
  /** Watch events received, for this node's objects and for others' (the label selector keeps the latter at 0). */
  readonly watchEvents = { own: 0, foreign: 0 };

  constructor(opts: AgentOptions) {
    this.o = { resyncMs: 60_000, opTimeoutMs: 120_000, ...opts, metadataCheckMs: opts.metadataCheckMs ?? opts.resyncMs ?? 60_000 };
    this.locks = opts.locks ?? new KeyedMutex();
    this.queue = new WorkQueue((key) => this.handle(key), {
      retryBaseMs: opts.retryBaseMs ?? 500,
      retryMaxMs: opts.retryMaxMs ?? 60_000,
      onError: (key, err, attempt) => this.o.log.warn('work failed; will retry', { key, attempt, error: String(err) }),
    });
    this.groups = new GroupSnapshots(opts.devices, opts.store);
    this.groupWork = new GroupWork({ store: opts.store, groups: this.groups, locks: this.locks, events: opts.events, log: opts.log, node: opts.node, ctx: () => this.ctx() });
    this.watches = [PLURAL.volume, PLURAL.snapshot, PLURAL.group].map((plural) => new CrWatch({
      kc: opts.kc, api: opts.api, plural, labelSelector: `${NODE_LABEL}=${opts.node}`, log: opts.log,
      restartBaseMs: opts.watchRestartBaseMs,
      onChange: (obj) => {
        this.watchEvents[(obj as DeviceCr).spec?.nodeName === this.o.node ? 'own' : 'foreign']++;
        if (plural === PLURAL.group) this.queueIfGroupWork(obj as ThinGroupSnapshot);
        else this.queueIfWork(obj as DeviceCr);
      },
    }));
  }

  private get devices() { return this.o.devices; }
  private get store() { return this.o.store; }
  private ctx(): OpContext { return withTimeout({}, this.o.opTimeoutMs); }

  /**
   * The startup reconcile and the watches' initial lists run side by side, but every event
   * waits in the paused queue until reconcile is done: nothing acts on a half-made device.
   */
  async start(): Promise<void> {
    this.queue.pause();
    await Promise.all([this.handle(RECONCILE), ...this.watches.map((w) => w.start())]);
    this.serving = true;
    this.queue.resume();
    this.queue.add(RECONCILE); // the metadata check the start's pass left out, now beside the RPCs
    // The first periodic pass at a random point of the period: agents started together (a
    // rollout, a cluster's restart) would otherwise list and reconcile in the same seconds.
    this.timer = setTimeout(() => {
      this.queue.add(RECONCILE);
      this.timer = setInterval(() => this.queue.add(RECONCILE), this.o.resyncMs);
      this.timer.unref();
    }, Math.floor(Math.random() * this.o.resyncMs));
    this.timer.unref();
  }

  /** The pool changed under the agent (it grew): its ThinPool status is written again soon. */
  poolChanged(): void { this.queue.add(RECONCILE); }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer); // a timeout's or an interval's: Node clears either
    for (const w of this.watches) await w.stop();
    await this.queue.stop(); // a SIGTERM lets the object in hand finish, as far as its own deadline
  }

  /**
   * Queues an object only when the version at hand asks for work: a settled object would cost a
   * read for nothing, and on a node with many objects those reads delay the ones that matter.
   * Any later change arrives as another event; devices themselves are checked by reconcile.
   */
  private queueIfWork(cr: DeviceCr): void {
    const echo = this.failureEchoes.get(cr.metadata.name);
    if (echo !== undefined) {
      if (echo === cr.metadata.resourceVersion) return;
      this.failureEchoes.delete(cr.metadata.name);
    }
    if (actionFor(cr, this.o.node)) this.queue.add(`${pluralOf(cr.metadata.name)}/${cr.metadata.name}`);
    else if (cr.kind === KIND.snapshot && cr.spec.group && isUnclaimed(cr) && !cr.metadata.deletionTimestamp) this.queue.add(`${PLURAL.group}/${cr.spec.group}`);
  }

  private queueIfGroupWork(cr: ThinGroupSnapshot): void {
    if (groupActionFor(cr, this.o.node)) this.queue.add(`${PLURAL.group}/${cr.metadata.name}`);
  }

  private async handle(key: string): Promise<void> {
    if (key === RECONCILE) return this.reconcileAll();
    const [plural, name] = key.split('/') as [string, string];
    if (plural === PLURAL.group) return this.groupWork.handle(name);
    // Read under the lock: a version read before waiting for it may be stale by the time it is held.
    const retry = await this.locks.run(name, async () => {
      const cr = await this.store.read<DeviceCr>(plural as typeof PLURAL.volume, name);
      const action = cr && actionFor(cr, this.o.node);
      if (action === 'retry') return cr; // a retry reconciles, which takes each device's lock itself
      if (!action) return undefined;
      // Making from a source suspends it (a thin snapshot), so its lock is held too. The agent is
      // the only holder of two locks at once (node RPCs hold one), so the nesting cannot deadlock.
      const origin = action === 'make' ? toRecord(cr!).origin : undefined;
      await (origin ? this.locks.run(origin, () => this.act(action, cr!)) : this.act(action, cr!));
      return undefined;
    });
    if (retry) await this.retryRequested(retry);
  }

  private async act(action: 'delete' | 'make' | 'expand', cr: DeviceCr): Promise<void> {
    await this.attempt(action, cr);
    this.failureEchoes.delete(cr.metadata.name);
  }

  private attempt(action: 'delete' | 'make' | 'expand', cr: DeviceCr): Promise<void> {
    const name = cr.metadata.name;
    switch (action) {
      case 'delete': return crashScope(`delete/${name}`, () => this.finish(cr));
      case 'make': return crashScope(`make/${name}`, () => this.make(cr));
      case 'expand': {
        const vol = cr as DeviceCr & { kind: 'ThinVolume' };
        return crashScope(`expand/${name}@${vol.spec.sizeBytes}`, () => this.grow(vol));
      }
    }
  }

  /** Finalizer first: from the moment a device may exist, the CR cannot vanish without us. */
  private async make(cr: DeviceCr): Promise<void> {
    const id = cr.metadata.name;
    try {
      if (!cr.metadata.finalizers?.includes(FINALIZER)) cr = await this.store.setFinalizer(cr, true);
      const rec = toRecord(cr);
      const ctx = this.ctx();
      let sizeBytes = rec.sizeBytes;
      if (rec.origin) {
        const origin = await this.store.getDevice(rec.origin);
        if (!origin) throw failedPrecondition(`source ${rec.origin} has no device on node ${this.o.node} (yet)`);
        if (cr.kind === KIND.snapshot) sizeBytes = origin.sizeBytes;
      }
      const roomBytes = rec.origin ? undefined : sizeBytes;
      // No Event for a routine success: one per device was one more API write per volume (issue 25),
      // and the CO already records its own (ProvisioningSucceeded on the claim). Failures still get one.
      await this.devices.create(ctx, { id, dmName: dmNameOf(cr.metadata.uid ?? id), kind: rec.kind, sizeBytes, meta: rec.meta, origin: rec.origin, roomBytes });
    } catch (err) {
      await this.reportFailure(cr, 'CreateFailed', err);
      throw err;
    }
  }

  /** Deleting CR: remove the device (Devices.remove ends in store.deleteDevice, which drops the finalizer). */
  private async finish(cr: DeviceCr): Promise<void> {
    const id = cr.metadata.name;
    try {
      if (isUnclaimed(cr)) {
        if (cr.metadata.finalizers?.includes(FINALIZER)) await this.store.setFinalizer(cr, false);
        return;
      }
      await this.devices.remove(this.ctx(), id); // no Event: the object goes with its finalizer, and its Events with it
    } catch (err) {
      if (isNotFound(err)) return;
      if (cr.metadata.annotations?.[FORCE_CLEANUP_ANNOTATION] !== undefined) {
        // The Event first: once the finalizer goes, the object (and whoever watches it) may be gone.
        this.o.events.warning(involved(cr), 'ForcedCleanup', `dropping the finalizer on request (${FORCE_CLEANUP_ANNOTATION}) although the device could not be deleted: ${failureOf(err).message}; thin device ${cr.status?.deviceId ?? '?'} stays in the pool as an orphan`);
        await this.store.deleteDevice(id);
        return;
      }
      await this.reportFailure(cr, 'DeleteFailed', err);
      throw err;
    }
  }

  private async grow(cr: DeviceCr & { kind: 'ThinVolume' }): Promise<void> {
    try {
      await this.devices.resize(this.ctx(), cr.metadata.name, cr.spec.sizeBytes);
      this.o.events.normal(involved(cr), 'DeviceExpanded', `thin device grown to ${cr.spec.sizeBytes} bytes`);
    } catch (err) {
      await this.reportFailure(cr, 'ExpandFailed', err);
      throw err;
    }
  }

  /** An operator asked for a retry: reconcile (which retries every Faulty device), then drop the ask. */
  private async retryRequested(cr: DeviceCr): Promise<void> {
    this.o.events.normal(involved(cr), 'RetryRequested', `retry requested through the ${RETRY_ANNOTATION} annotation`);
    await this.reconcileAll(true);
    await this.o.api.patchClusterCustomObject({
      group: GROUP, version: VERSION, plural: pluralOf(cr.metadata.name), name: cr.metadata.name,
      body: { metadata: { annotations: { [RETRY_ANNOTATION]: null } } },
    }, MERGE_PATCH).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
  }

  /** Writes the failure's code and message into status (the controller returns them) and an Event. */
  private async reportFailure(cr: DeviceCr, reason: string, err: unknown): Promise<void> {
    const f = failureOf(err);
    this.o.events.warning(involved(cr), reason, `${f.code}: ${f.message}`);
    try {
      const written = await this.store.retryWrite(`recording failure of ${cr.metadata.name}`, async () => {
        const cur = await this.store.read<DeviceCr>(pluralOf(cr.metadata.name), cr.metadata.name);
        if (!cur) return undefined;
        const state = isUnclaimed(cur) ? 'Pending' : cur.status?.state;
        return this.store.putStatus(pluralOf(cr.metadata.name), cur, { ...cur.status, state, code: f.code, message: f.message, updatedAt: new Date().toISOString() });
      });
      const rv = written?.metadata.resourceVersion;
      if (rv) this.failureEchoes.set(cr.metadata.name, rv);
    } catch (e) {
      this.o.log.error('could not record failure in status', { object: cr.metadata.name, error: apiMessage(e) });
    }
  }

  /** Reconcile (src/pool/reconcile.ts) over the CRs, then ThinPool status, Events, and a resync of every CR. */
  private async reconcileAll(metadataNow = false): Promise<void> {
    const ctx = this.ctx();
    // The start's pass only settles records against the kernel, so that serving begins sooner.
    const metadata = this.serving && (metadataNow || Date.now() - this.metadataCheckedAt >= this.o.metadataCheckMs);
    const report = await reconcile(ctx, this.devices, this.serving ? { exclusive: (id, fn) => this.locks.tryRun(id, fn), metadata, groups: this.groups } : { metadata, groups: this.groups });
    if (metadata) this.metadataCheckedAt = Date.now();
    this.lastReport = report;
    const crs = [...await this.store.listCrs(PLURAL.volume), ...await this.store.listCrs(PLURAL.snapshot)];
    const byName = new Map(crs.map((c) => [c.metadata.name, c]));
    for (const id of [...this.faultyReported.keys()]) if (!report.faulty.some((f) => f.id === id)) this.faultyReported.delete(id);
    for (const r of report.repaired) {
      const cr = byName.get(r.id);
      this.o.events.normal(cr ? involved(cr) : { kind: KIND.volume, name: r.id }, 'Repaired', `reconcile found the device ${r.from} and ${r.action.replace('_', ' ')} it`);
    }
    for (const f of report.faulty) {
      // Each periodic reconcile retries Faulty devices; say so once per distinct error, not every minute.
      if (this.faultyReported.get(f.id) === f.error) continue;
      this.faultyReported.set(f.id, f.error);
      const cr = byName.get(f.id);
      this.o.events.warning(cr ? involved(cr) : { kind: KIND.volume, name: f.id }, 'DeviceFaulty', `${f.error}; set annotation ${RETRY_ANNOTATION} to retry after fixing the cause`);
    }
    await this.handleOrphans(ctx, report);
    if (this.o.onPool) this.o.onPool(await this.store.readPool());
    await this.writePoolStatus(ctx, report, crs.length);
    for (const c of crs) this.queueIfWork(c);
    for (const g of await this.store.listGroupCrs()) this.queueIfGroupWork(g);
  }

  /** Orphans are reported; they are deleted only when the ThinPool carries the opt-in annotation. */
  private async handleOrphans(ctx: OpContext, report: ReconcileReport): Promise<void> {
    if (report.orphans.length === 0) return;
    const pool = this.devices.pool;
    const optIn = (await this.store.readPool()).metadata.annotations?.[REMOVE_ORPHANS_ANNOTATION] === 'true';
    const kept: ReconcileReport['orphans'] = [];
    for (const o of report.orphans) {
      const who = { kind: KIND.pool, name: this.o.node };
      if (!optIn) {
        this.o.events.warning(who, 'OrphanDevice', `thin device ${o.deviceId} (${o.dmName ?? 'inactive'}) is in pool ${pool.name} but no custom resource owns it; left untouched (annotate the ThinPool ${REMOVE_ORPHANS_ANNOTATION}=true to delete such devices)`);
        kept.push(o);
        continue;
      }
      try {
        // The agent's worker is the only sender of pool messages in Kubernetes mode, so no interleaving.
        await this.devices.removeOrphan(ctx, o);
        this.o.events.normal(who, 'OrphanRemoved', `deleted thin device ${o.deviceId} (${o.dmName ?? 'inactive'}), which no custom resource owned`);
      } catch (err) {
        kept.push(o);
        this.o.events.warning(who, 'OrphanRemoveFailed', `thin device ${o.deviceId} (${o.dmName ?? 'inactive'}): ${apiMessage(err)}`);
      }
    }
    report.orphans = kept;
  }

  private async writePoolStatus(ctx: OpContext, report: ReconcileReport, devices: number): Promise<void> {
    const pool = this.devices.pool;
    const h = await pool.health(ctx);
    const capacityBytes = await pool.capacity(ctx, h);
    const now = new Date().toISOString();
    const short = backingShortfall(h.backing);
    this.reportShortfall(short);
    await this.store.updatePoolStatus((s) => ({
      ...s,
      poolName: pool.name, health: h.condition, reasons: h.reasons,
      dataTotalBytes: h.dataTotalBytes, dataUsedBytes: h.dataUsedBytes, dataAvailableBytes: h.dataFreeBytes,
      metadataTotalBytes: h.metadataTotalBytes, metadataUsedBytes: h.metadataUsedBytes,
      dataSize: formatBytes(h.dataTotalBytes), dataUsed: formatBytes(h.dataUsedBytes), capacity: formatBytes(capacityBytes),
      // Inactive orphans are only seen in passes that read the metadata: others keep that count.
      capacityBytes, devices, orphans: report.metadata === 'checked' ? report.orphans.length : Math.max(s.orphans ?? 0, report.orphans.length), lastReconcileTime: now,
      conditions: [{
        type: 'Ready', status: h.writable ? 'True' : 'False', reason: h.condition === 'ok' ? 'PoolHealthy' : camel(h.condition),
        message: h.reasons.join('; ') || 'pool accepts new volumes', lastTransitionTime: now,
      }, ...(h.backing ? [{
        type: 'BackingFits', status: short ? 'False' as const : 'True' as const, reason: short ? 'FilesystemTooSmall' : 'FilesystemHoldsPool',
        message: short ?? `the filesystem under ${h.backing.dataFile} can hold the whole data file`, lastTransitionTime: now,
      }] : [])],
    }));
  }

  /** A Warning Event when the node's filesystem stops holding the file pool (once per change, not every pass). */
  private reportShortfall(short: string | undefined): void {
    if (short !== undefined && this.shortfallReported === undefined) this.o.events.warning({ kind: KIND.pool, name: this.o.node }, 'BackingTooSmall', short);
    if (short === undefined && this.shortfallReported !== undefined) this.o.events.normal({ kind: KIND.pool, name: this.o.node }, 'BackingFits', 'the filesystem under the pool can hold its whole data file again');
    this.shortfallReported = short;
  }
}

/** What the agent must do for this version of the object, if anything. */
function actionFor(cr: DeviceCr, node: string): 'delete' | 'make' | 'retry' | 'expand' | undefined {
  if (cr.spec?.nodeName !== node) return undefined;
  if (cr.metadata.deletionTimestamp) return 'delete';
  // A group's member is made with its group, in the group's freeze.
  if (isUnclaimed(cr)) return cr.kind === KIND.snapshot && cr.spec.group ? undefined : 'make';
  if (cr.metadata.annotations?.[RETRY_ANNOTATION] !== undefined) return 'retry';
  if (cr.kind === KIND.volume && cr.status?.state !== 'Faulty' && cr.spec.sizeBytes > (cr.status?.sizeBytes ?? 0)) return 'expand';
  return undefined;
}

function involved(cr: DeviceCr): { kind: string; name: string; uid?: string } {
  return { kind: cr.kind, name: cr.metadata.name, uid: cr.metadata.uid };
}

function camel(s: string): string {
  return s.split('_').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}
