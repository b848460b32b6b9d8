import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { Condition, NewVolume, VolumeBackend } from '../controller/backend.ts';
import { accessOf, csiNameOf, fsTypeOf } from '../volume/meta.ts';
import { CsiError, deadlineExceeded, failedPrecondition, notFound, resourceExhausted } from '../errors.ts';
import { apiStatus, codeFromName } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import { byId, type DeviceRecord } from '../state/types.ts';
import { writesFail } from '../pool/health.ts';
import { claimOf, NODE_META, toRecord } from './map.ts';
import { quantity } from './quantity.ts';
import type { DeviceCr, ThinPoolCr, ThinSnapshot, ThinVolume } from './types.ts';
import { API_VERSION, FINALIZER, GROUP, isUnclaimed, KIND, NODE_LABEL, objectPluralOf, PLURAL, pluralOf, VERSION } from './types.ts';
import { backoff, sleep } from '../system/delay.ts';
import { isConflict, isNotFound, MERGE_PATCH } from './api.ts';
import type { ObjectChanges } from './changes.ts';

export interface KubeBackendOptions {
  topologyKey: string;
  /** How long to wait for an agent when the request has no deadline. */
  defaultWaitMs?: number;
  pollBaseMs?: number;
  pollMaxMs?: number;
  /** A ThinPool status older than this counts as no capacity: its agent is probably gone. */
  staleAfterMs?: number;
  /**
   * Whether a Node object still exists. When a volume's node has been deleted from the
   * cluster no agent will ever release the finalizer, so a delete releases it itself.
   */
  nodeExists?: (name: string) => Promise<boolean>;
  /** Watch events of the objects calls wait on; without it, calls poll. */
  changes?: ObjectChanges;
}

/** Was the status (its failure code) written at or after `since`? Older codes answer an earlier call. */
function fresh(cr: DeviceCr, since: number): boolean {
  const at = Date.parse(cr.status?.updatedAt ?? '');
  return Number.isFinite(at) && at >= since;
}

/** Is the CR in a state the controller can answer from (not being made, not being deleted)? */
function settled(cr: DeviceCr): boolean {
  return !cr.metadata.deletionTimestamp && !isUnclaimed(cr) && cr.status?.state !== 'Creating' && cr.status?.state !== 'Unknown';
}

/**
 * The controller's side of Kubernetes mode: volumes and snapshots are custom resources
 * that the node agents turn into devices. Every call creates or deletes a CR and then
 * waits (on watch events, or polls with capped backoff; bounded by the RPC deadline) for the agent's verdict.
 */
export class KubeBackend implements VolumeBackend {
  readonly topologyKey: string;
  private readonly api: CustomObjectsApi;
  private readonly opts: Required<Omit<KubeBackendOptions, 'changes'>> & Pick<KubeBackendOptions, 'changes'>;

  constructor(api: CustomObjectsApi, opts: KubeBackendOptions) {
    this.api = api;
    this.topologyKey = opts.topologyKey;
    this.opts = { defaultWaitMs: 60_000, pollBaseMs: 50, pollMaxMs: 1000, staleAfterMs: 5 * 60_000, nodeExists: async () => true, ...opts };
  }

  private async read(id: string): Promise<DeviceCr | undefined> {
    try {
      return await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: objectPluralOf(id), name: id }) as DeviceCr;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw apiStatus(err, `reading ${objectPluralOf(id)}/${id}`);
    }
  }

  private async readPool(node: string): Promise<ThinPoolCr | undefined> {
    try {
      return await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL.pool, name: node }) as ThinPoolCr;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw apiStatus(err, `reading thinpools/${node}`);
    }
  }

  /** Only settled CRs are records: a CR still being made is awaited by create(), not reported. */
  async get(_ctx: OpContext, id: string): Promise<DeviceRecord | undefined> {
    const cr = await this.read(id);
    return cr && settled(cr) ? toRecord(cr) : undefined;
  }

  async list(_ctx: OpContext): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    for (const plural of [PLURAL.volume, PLURAL.snapshot]) {
      try {
        const list = await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural }) as { items: DeviceCr[] };
        out.push(...list.items.filter(settled).map(toRecord));
      } catch (err) {
        throw apiStatus(err, `listing ${plural}`);
      }
    }
    return out.sort(byId);
  }

  /** Node names in the requested topology, preferred first, without repeats. */
  private wantedNodes(spec: NewVolume): string[] {
    const nodes = [...(spec.preferred ?? []), ...(spec.requisite ?? [])].map((s) => s[this.topologyKey]).filter((n): n is string => !!n);
    return [...new Set(nodes)];
  }

  /** Room on a node's pool, from the ThinPool status its agent keeps (already x overprovision ratio). */
  private async room(node: string): Promise<{ bytes: number; why?: string }> {
    const pool = await this.readPool(node);
    if (!pool?.status || pool.status.capacityBytes === undefined) return { bytes: 0, why: `node ${node} has no ThinPool status (is the node agent running?)` };
    const seen = Date.parse(pool.status.lastReconcileTime ?? '');
    if (!(seen > Date.now() - this.opts.staleAfterMs)) return { bytes: 0, why: `node ${node}'s ThinPool status was last refreshed at ${pool.status.lastReconcileTime ?? 'never'} (is the node agent running?)` };
    const bytes = pool.status.capacityBytes;
    return { bytes, why: pool.status.health !== 'ok' ? `pool health ${pool.status.health}: ${(pool.status.reasons ?? []).join('; ')}` : undefined };
  }

  private async pickNode(spec: NewVolume, source: DeviceCr | undefined): Promise<string> {
    const wanted = this.wantedNodes(spec);
    if (source) {
      const node = source.spec.nodeName;
      // A thin snapshot shares blocks with its origin: it can only live in the origin's pool.
      if (wanted.length > 0 && !wanted.includes(node)) {
        throw resourceExhausted(`${spec.kind === 'volume' ? 'restore/clone' : 'snapshot'} of ${source.metadata.name} is only possible on its node ${node}, which is not in the requested topology (${wanted.join(', ')})`);
      }
      return node;
    }
    const candidates = wanted.length > 0 ? wanted : await this.allPoolNodes();
    const refusals: string[] = [];
    for (const node of candidates) {
      const r = await this.room(node);
      if (r.bytes >= spec.sizeBytes) return node;
      refusals.push(`${node}: room for ${r.bytes} bytes${r.why ? ` (${r.why})` : ''}`);
    }
    throw resourceExhausted(`no node can hold ${spec.sizeBytes} bytes: ${refusals.join('; ') || 'no ThinPools exist'}`);
  }

  private async allPoolNodes(): Promise<string[]> {
    const list = await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL.pool }) as { items: ThinPoolCr[] };
    return list.items.map((p) => p.metadata.name).sort();
  }

  private body(spec: NewVolume, node: string, source: DeviceCr | undefined): DeviceCr {
    // Born with the agent's finalizer: adding it later was one more write per volume (issue 25).
    const metadata = { name: spec.id, labels: { [NODE_LABEL]: node }, finalizers: [FINALIZER] };
    if (spec.kind === 'snapshot') {
      return { apiVersion: API_VERSION, kind: KIND.snapshot, metadata, spec: { nodeName: node, sourceVolume: spec.origin!, csiName: csiNameOf(spec), size: quantity(spec.sizeBytes) } } satisfies ThinSnapshot;
    }
    const s: ThinVolume['spec'] = {
      nodeName: node, sizeBytes: spec.sizeBytes, size: quantity(spec.sizeBytes), csiName: csiNameOf(spec),
      accessType: accessOf(spec), ...claimOf(spec),
    };
    if (fsTypeOf(spec)) s.fsType = fsTypeOf(spec);
    if (source) s.source = { kind: source.kind === KIND.snapshot ? 'snapshot' : 'volume', name: source.metadata.name };
    return { apiVersion: API_VERSION, kind: KIND.volume, metadata, spec: s };
  }

  async create(ctx: OpContext, spec: NewVolume): Promise<DeviceRecord> {
    const source = spec.origin ? await this.read(spec.origin) : undefined;
    if (spec.origin && (!source || source.metadata.deletionTimestamp)) throw notFound(`source ${spec.origin} does not exist`);
    const node = await this.pickNode(spec, source);
    const deadline = this.deadline(ctx);
    const since = Date.now();
    for (;;) {
      const existing = await this.read(spec.id);
      if (existing?.metadata.deletionTimestamp) {
        await this.waitGone(ctx, spec.id, deadline, since);
        continue;
      }
      if (existing && isUnclaimed(existing) && existing.status?.code) {
        // A failed earlier attempt: start over, so a new placement is possible.
        await this.remove(ctx, spec.id);
        continue;
      }
      if (!existing && !(await this.tryCreate(spec, node, source))) continue;
      return this.waitReady(ctx, spec.id, deadline, since, (cr) => cr.status?.state !== undefined && !isUnclaimed(cr) && cr.status.state !== 'Creating');
    }
  }

  /** false when someone created it first (a concurrent retry): the caller re-reads. */
  private async tryCreate(spec: NewVolume, node: string, source: DeviceCr | undefined): Promise<boolean> {
    try {
      await this.api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: pluralOf(spec.id), body: this.body(spec, node, source) });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw apiStatus(err, `creating ${pluralOf(spec.id)}/${spec.id}`);
    }
  }

  private deadline(ctx: OpContext): number {
    return ctx.deadline ?? Date.now() + this.opts.defaultWaitMs;
  }

  /**
   * The object now, then each newer version: the watch's (ObjectChanges) as its events come, with
   * a read after pollMaxMs of silence; without a watch, a read after each capped backoff.
   */
  private async *versions(ctx: OpContext, id: string, deadline: number): AsyncGenerator<DeviceCr | undefined> {
    const sub = this.opts.changes?.subscribe<DeviceCr>(id);
    try {
      yield await this.read(id);
      for (let attempt = 0; ; attempt++) {
        const ms = Math.min(sub ? this.opts.pollMaxMs : backoff(attempt, this.opts.pollBaseMs, this.opts.pollMaxMs), Math.max(1, deadline - Date.now()));
        const woke = sub ? await sub.next(ms, ctx.signal) : (await sleep(ms, ctx.signal), false);
        yield woke ? sub!.latest : await this.read(id);
      }
    } finally {
      sub?.close();
    }
  }

  /** Waits until `done`, a failure the agent reported (its code), or the deadline. */
  private async waitReady(ctx: OpContext, id: string, deadline: number, since: number, done: (cr: DeviceCr) => boolean): Promise<DeviceRecord> {
    for await (const cr of this.versions(ctx, id, deadline)) {
      if (!cr) throw notFound(`${pluralOf(id)}/${id} was deleted while waiting for it`);
      if (cr.status?.state === 'Faulty' || (cr.status?.code && fresh(cr, since))) {
        throw new CsiError(codeFromName(cr.status?.code), cr.status?.message ?? 'the node agent reported a failure');
      }
      if (done(cr)) return toRecord(cr);
      if (Date.now() >= deadline || ctx.signal?.aborted) {
        throw deadlineExceeded(`${KIND[cr.kind === KIND.snapshot ? 'snapshot' : 'volume']} ${id} on node ${cr.spec.nodeName} is not ready yet (state ${cr.status?.state ?? 'Pending'}); the node agent may be down`);
      }
    }
    throw new Error('unreachable: versions() never ends');
  }

  private async waitGone(ctx: OpContext, id: string, deadline: number, since: number): Promise<void> {
    for await (const cr of this.versions(ctx, id, deadline)) {
      if (!cr) return;
      // A code written after this call began is the agent's verdict on this delete.
      if (cr.metadata.deletionTimestamp && cr.status?.code && fresh(cr, since) && !isUnclaimed(cr)) {
        throw new CsiError(codeFromName(cr.status.code), cr.status.message ?? 'the node agent could not delete the device');
      }
      if (Date.now() >= deadline || ctx.signal?.aborted) {
        throw deadlineExceeded(`${id} is still being deleted on node ${cr.spec.nodeName} (state ${cr.status?.state ?? 'Pending'}); the node agent may be down`);
      }
    }
  }

  /** Deletes the CR and waits until the agent has removed the device and its finalizer. */
  async remove(ctx: OpContext, id: string): Promise<void> {
    const since = Date.now();
    try {
      await this.api.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: objectPluralOf(id), name: id });
    } catch (err) {
      if (isNotFound(err)) return;
      throw apiStatus(err, `deleting ${objectPluralOf(id)}/${id}`);
    }
    await this.releaseIfUnowned(id);
    await this.waitGone(ctx, id, this.deadline(ctx), since);
  }

  /**
   * Drops the finalizer when no agent will: the device went with its deleted node, or no agent
   * ever claimed the CR (no device exists, as the claim comes before the kernel call). The claim
   * and this release are both conditional writes, so an agent claiming meanwhile wins or loses
   * cleanly; otherwise the CR waits for its agent.
   */
  private async releaseIfUnowned(id: string): Promise<void> {
    const cr = await this.read(id);
    if (!cr?.metadata.finalizers?.includes(FINALIZER)) return;
    try {
      if (!(await this.opts.nodeExists(cr.spec.nodeName))) {
        await this.api.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: objectPluralOf(id), name: id, body: { metadata: { finalizers: [] } } }, MERGE_PATCH);
      } else if (isUnclaimed(cr)) {
        // A merge patch naming the resourceVersion is conditional, as an update would be.
        const metadata = { resourceVersion: cr.metadata.resourceVersion, finalizers: cr.metadata.finalizers.filter((f) => f !== FINALIZER) };
        await this.api.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: objectPluralOf(id), name: id, body: { metadata } }, MERGE_PATCH);
      }
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw apiStatus(err, `releasing ${objectPluralOf(id)}/${id}`);
    }
  }

  /** Raises spec.sizeBytes (merge patch) and waits for the agent to grow the device. */
  async expand(ctx: OpContext, id: string, sizeBytes: number): Promise<DeviceRecord> {
    const cr = await this.read(id);
    if (!cr || cr.kind !== KIND.volume) throw notFound(`volume ${id} does not exist`);
    if (cr.status?.state === 'Faulty') throw failedPrecondition(`volume ${id} is Faulty: ${cr.status.message ?? ''}`);
    const since = Date.now();
    if (cr.spec.sizeBytes < sizeBytes) {
      try {
        await this.api.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL.volume, name: id, body: { spec: { sizeBytes, size: quantity(sizeBytes) } } }, MERGE_PATCH);
      } catch (err) {
        throw apiStatus(err, `patching thinvolumes/${id}`);
      }
    }
    return this.waitReady(ctx, id, this.deadline(ctx), since, (c) => (c.status?.sizeBytes ?? 0) >= sizeBytes);
  }

  async capacity(_ctx: OpContext, segments?: Record<string, string>): Promise<number> {
    const node = segments?.[this.topologyKey];
    if (node) return (await this.room(node)).bytes;
    // No segment: the largest single pool, since a volume never spans pools.
    let best = 0;
    for (const n of await this.allPoolNodes()) best = Math.max(best, (await this.room(n)).bytes);
    return best;
  }

  async condition(_ctx: OpContext, rec: DeviceRecord): Promise<Condition> {
    if (rec.state === 'Faulty') return { abnormal: true, message: `device is Faulty: ${rec.error ?? 'unknown error'}` };
    const node = rec.meta[NODE_META] ?? '';
    const pool = node ? await this.readPool(node) : undefined;
    const h = pool?.status?.health;
    if (h && writesFail(h, pool?.status?.dataAvailableBytes)) return { abnormal: true, message: (pool?.status?.reasons ?? [h]).join('; ') };
    return { abnormal: false, message: `device is ${rec.state} on node ${node}` };
  }

  topologyOf(rec: DeviceRecord): Record<string, string> { return { [this.topologyKey]: rec.meta[NODE_META] ?? '' }; }
}
