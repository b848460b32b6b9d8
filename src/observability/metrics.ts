import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const P = 'dmthin_csi_';
const FAST = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Every metric the driver exports, on a registry of its own (never the global one), so
 * two drivers in one test process do not collide.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly rpcDuration = new Histogram({
    name: `${P}rpc_duration_seconds`, help: 'CSI RPC latency by method and gRPC code',
    labelNames: ['method', 'code'] as const, buckets: FAST, registers: [this.registry],
  });
  readonly commandDuration = new Histogram({
    name: `${P}dm_command_duration_seconds`, help: 'device-mapper operation latency by operation and outcome',
    labelNames: ['op', 'outcome'] as const, buckets: FAST, registers: [this.registry],
  });
  readonly suspendWindow = new Histogram({
    name: `${P}snapshot_suspend_seconds`, help: 'How long an origin stayed suspended while a snapshot was taken',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry],
  });
  readonly groupSuspendWindow = new Histogram({
    name: `${P}group_snapshot_suspend_seconds`, help: 'How long a group snapshot kept its members suspended: first suspend to last resume, one sample per group',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: `${P}reconcile_duration_seconds`, help: 'Pool reconcile duration by outcome, and whether the pool metadata was compared',
    labelNames: ['outcome', 'metadata'] as const, buckets: FAST, registers: [this.registry],
  });
  readonly reconcileRepairs = new Counter({
    name: `${P}reconcile_repairs_total`, help: 'Devices repaired or marked faulty by reconcile, by action',
    labelNames: ['action'] as const, registers: [this.registry],
  });
  readonly poolBytes = new Gauge({
    name: `${P}pool_bytes`, help: 'Thin pool space in bytes', labelNames: ['pool', 'kind', 'usage'] as const,
    registers: [this.registry],
  });
  readonly poolCondition = new Gauge({
    name: `${P}pool_condition`, help: '1 when the pool is in the named condition',
    labelNames: ['pool', 'condition'] as const, registers: [this.registry],
  });
  readonly poolGrowths = new Counter({
    name: `${P}pool_growths_total`, help: 'Pool growth attempts by outcome (grown, refused, failed) and reason (requested, low_water, device_grew; ceiling, no_room, not_file)',
    labelNames: ['pool', 'outcome', 'reason'] as const, registers: [this.registry],
  });
  readonly devices = new Gauge({
    name: `${P}devices`, help: 'Thin devices by kind and state', labelNames: ['kind', 'state'] as const,
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: P });
  }

  /** Times `fn` into a histogram labelled with its outcome. */
  async time<T>(h: Histogram<'op' | 'outcome'>, op: string, fn: () => Promise<T>): Promise<T> {
    const end = h.startTimer({ op });
    try {
      const v = await fn();
      end({ outcome: 'ok' });
      return v;
    } catch (e) {
      end({ outcome: 'error' });
      throw e;
    }
  }
}
