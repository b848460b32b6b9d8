import { type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { unavailable } from '../errors.ts';
import { FallingRate, type Logger } from '../observability/log.ts';
import { apiMessage, isConflict, isNotFound } from './api.ts';

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  renewMs?: number;
  log: Logger;
}

const micro = (ms: number) => new V1MicroTime(ms);

/**
 * One active controller through a coordination.k8s.io/v1 Lease (get, create, update only).
 * The holder renews every renewMs; another replica takes over once renewTime is older than
 * leaseDurationSeconds. A holder that cannot renew in time stops acting as leader on its own.
 */
export class LeaderElector {
  private readonly coord: CoordinationV1Api;
  private readonly o: Required<LeaderOptions>;
  private timer: NodeJS.Timeout | undefined;
  private lastRenew = 0;
  private leading = false;
  /** When the API server last answered a lease call (any answer, a 409 included). */
  private lastContact = 0;
  private lastError = '';
  private inflight: Promise<void> | undefined;
  /** An API server that stays away is logged at a falling rate, not at every renewal. */
  private readonly failures = new FallingRate();

  constructor(coord: CoordinationV1Api, opts: LeaderOptions) {
    this.coord = coord;
    this.o = { leaseDurationSeconds: 15, renewMs: 5000, ...opts };
  }

  get isLeader(): boolean {
    return this.leading && Date.now() - this.lastRenew < this.o.leaseDurationSeconds * 1000;
  }

  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => this.tickOnce(), this.o.renewMs);
    this.timer.unref();
  }

  /**
   * One tick at a time: against a slow API server (calls taking longer than renewMs) a second
   * tick would read the lease before the first one's write and then fail that write with 409,
   * which reads as another replica winning: the only replica dropped its own leadership.
   */
  private tickOnce(): void {
    if (this.inflight) return;
    this.inflight = this.tick().finally(() => { this.inflight = undefined; });
  }

  /**
   * Stops renewing and, when this replica holds the lease, hands it back (holder cleared,
   * 1 s duration) so a standby takes over at its next tick instead of after the full duration.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.inflight; // its write would otherwise land after the release
    const held = this.leading;
    this.leading = false;
    if (held) await this.release();
  }

  private async release(): Promise<void> {
    const { namespace, name, identity } = this.o;
    try {
      const lease = await this.coord.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      await this.coord.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: {
        ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: micro(Date.now()),
      } } });
      this.o.log.info('released controller leadership', { lease: `${namespace}/${name}` });
    } catch (err) {
      this.o.log.warn('could not release the lease; a standby takes over when it expires', { lease: `${namespace}/${name}`, error: apiMessage(err) });
    }
  }

  /**
   * Ready while the API server answered within one lease duration, leader or not: a standby
   * is healthy, a replica that cannot reach the API server is not (nothing it does can work).
   */
  readiness(): { ready: boolean; reason?: string } {
    if (Date.now() - this.lastContact < this.o.leaseDurationSeconds * 1000) return { ready: true };
    return { ready: false, reason: `no answer from the Kubernetes API server for the lease ${this.o.namespace}/${this.o.name}${this.lastError ? `: ${this.lastError}` : ''}` };
  }

  /** Throws UNAVAILABLE unless this replica holds the lease. */
  check(): void {
    if (!this.isLeader) throw unavailable(`this controller replica is not the leader (lease ${this.o.namespace}/${this.o.name}); retry`);
  }

  async tick(): Promise<void> {
    const { namespace, name, identity, leaseDurationSeconds } = this.o;
    try {
      let lease: V1Lease;
      try {
        lease = await this.coord.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await this.coord.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: micro(Date.now()), renewTime: micro(Date.now()), leaseTransitions: 0 } } });
        return this.acquired(true);
      }
      const spec = lease.spec ?? {};
      const renewed = spec.renewTime ? Date.parse(String(spec.renewTime)) : 0;
      const expired = renewed + (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000 < Date.now();
      const mine = spec.holderIdentity === identity;
      if (!mine && !expired && spec.holderIdentity) return this.lost();
      const acquire = mine && spec.acquireTime ? Date.parse(String(spec.acquireTime)) : Date.now();
      await this.coord.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: {
        holderIdentity: identity, leaseDurationSeconds, acquireTime: micro(acquire), renewTime: micro(Date.now()),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      } } });
      this.acquired(!mine);
    } catch (err) {
      // A 409 means another replica wrote first: it is the leader for this round.
      if (isConflict(err)) return this.lost();
      this.lastError = apiMessage(err);
      const attempts = this.failures.failed();
      if (attempts !== undefined) this.o.log.warn('lease renewal failed', { lease: `${namespace}/${name}`, error: apiMessage(err), attempts });
    }
  }

  private acquired(fresh: boolean): void {
    this.failures.reset();
    this.lastRenew = Date.now();
    this.lastContact = this.lastRenew;
    if (fresh || !this.leading) this.o.log.info('became controller leader', { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity });
    this.leading = true;
  }

  private lost(): void {
    this.failures.reset();
    this.lastContact = Date.now();
    if (this.leading) this.o.log.warn('lost controller leadership', { lease: `${this.o.namespace}/${this.o.name}` });
    this.leading = false;
  }
}
