import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import { DRIVER_NAME, VERSION } from '../version.ts';

const P = 'dmthin_csi_';

/** A pool reading's figures, in bytes (the pool layer's PoolHealth and its capacity). */
export interface PoolFigures {
  dataTotalBytes: number;
  dataUsedBytes: number;
  /** What the pool can still take; absent: its free space. */
  dataFreeBytes?: number;
  metadataTotalBytes: number;
  metadataUsedBytes: number;
  /** Bytes new volumes may claim: free data x the overprovision ratio, 0 when the pool takes none. */
  capacityBytes: number;
}
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
  // One gauge per quantity (Prometheus' naming): a size and a use under one name would sum to nothing meaningful.
  readonly poolDataSize = this.poolGauge('pool_data_size_bytes', 'Size of the thin pool\'s data device in bytes');
  readonly poolDataUsed = this.poolGauge('pool_data_used_bytes', 'Data bytes the thin pool has mapped');
  readonly poolDataAvailable = this.poolGauge('pool_data_available_bytes', 'Data bytes the thin pool can still take (for a file-backed pool, no more than its filesystem can give)');
  readonly poolMetadataSize = this.poolGauge('pool_metadata_size_bytes', 'Size of the thin pool\'s metadata device in bytes');
  readonly poolMetadataUsed = this.poolGauge('pool_metadata_used_bytes', 'Metadata bytes the thin pool uses');
  readonly poolCapacity = this.poolGauge('pool_capacity_bytes', 'Bytes new volumes may still claim on this node: what GetCapacity and CSIStorageCapacity report');
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

  readonly buildInfo = new Gauge({
    name: `${P}build_info`, help: 'Always 1; the labels say which driver build runs',
    labelNames: ['version', 'driver', 'nodejs_version'] as const, registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    // Unprefixed, as prom-client names them (process_cpu_seconds_total...): the standard process dashboards find them.
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
    this.buildInfo.set({ version: VERSION, driver: DRIVER_NAME, nodejs_version: process.version }, 1);
  }

  /** One reading of a pool; dataFreeBytes only where the reading has it. */
  recordPool(pool: string, r: PoolFigures): void {
    this.poolDataSize.set({ pool }, r.dataTotalBytes);
    this.poolDataUsed.set({ pool }, r.dataUsedBytes);
    this.poolDataAvailable.set({ pool }, r.dataFreeBytes ?? Math.max(0, r.dataTotalBytes - r.dataUsedBytes));
    this.poolMetadataSize.set({ pool }, r.metadataTotalBytes);
    this.poolMetadataUsed.set({ pool }, r.metadataUsedBytes);
    this.poolCapacity.set({ pool }, r.capacityBytes);
  }

  private poolGauge(name: string, help: string): Gauge<'pool'> {
    return new Gauge({ name: `${P}${name}`, help, labelNames: ['pool'] as const, registers: [this.registry] });
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
