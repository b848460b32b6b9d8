import type * as grpc from '@grpc/grpc-js';
import { assembleNode, probeHealthy, type NodeParts, type NodeSystem } from './assemble.ts';
import { LocalBackend, LocalGroupBackend } from './controller/local-backend.ts';
import { ControllerService } from './controller/service.ts';
import { serve } from './csi/server.ts';
import type { Logger } from './observability/log.ts';
import { refreshDeviceGauge, serveMetrics, type MetricsEndpoint } from './observability/http.ts';
import { reconcile, type Exclusive, type ReconcileReport } from './pool/reconcile.ts';
import { background, type OpContext } from './system/context.ts';
import { KeyedMutex } from './system/lock.ts';
import { errorMessage } from './errors.ts';
import type { GroupStore, StateStore } from './state/types.ts';
import { GroupSnapshots } from './pool/group.ts';
import { GroupControllerService } from './controller/groups.ts';
import type { DriverConfig } from './cli/config.ts';
import { TOPOLOGY_KEY } from './version.ts';

/** What standalone mode runs on: a node's side effects, and the store it keeps its records in. */
export interface DriverParts extends NodeSystem {
  store: StateStore;
  /** Where group snapshots are recorded; without it the driver offers no GroupController. */
  groups?: GroupStore;
}

export interface Driver extends NodeParts {
  controller: ControllerService;
  /** Present when the store keeps group records. */
  groupController?: GroupControllerService;
  /** The start's reconcile: every record settled against the kernel, the pool metadata not yet read. */
  startup: ReconcileReport;
  /**
   * A reconcile that also compares the records with the pool's metadata. Given `exclusive`
   * (the RPCs' per-volume locks), it may run while RPCs are served.
   */
  checkPool(ctx: OpContext, exclusive?: Exclusive): Promise<ReconcileReport>;
}

/** Builds (or adopts) the pool, reconciles every record against it, and wires the CSI services. */
export async function createDriver(ctx: OpContext, cfg: DriverConfig, parts: DriverParts): Promise<Driver> {
  const node = await assembleNode(ctx, cfg, parts, parts.store, { controller: true, groupController: parts.groups !== undefined, snapshotMetadata: true });
  const { pool, devices } = node;
  const groups = parts.groups ? new GroupSnapshots(devices, parts.groups) : undefined;
  const startup = await reconcile(ctx, devices, { metadata: false, groups });
  logReport(parts.log, pool.name, startup);
  await refreshDeviceGauge(parts.store, node.metrics);
  const checkPool = async (c: OpContext, exclusive?: Exclusive) => {
    const report = await reconcile(c, devices, { exclusive, groups });
    logReport(parts.log, pool.name, report);
    return report;
  };
  const backend = new LocalBackend(devices, cfg.nodeId, TOPOLOGY_KEY);
  return {
    ...node, startup, checkPool,
    controller: new ControllerService(backend, { fsType: cfg.defaultFs }),
    ...(groups ? { groupController: new GroupControllerService(backend, new LocalGroupBackend(groups)) } : {}),
  };
}

function logReport(log: Logger, pool: string, r: ReconcileReport): void {
  log.info('pool reconciled', { pool, tx: r.tx, metadata: r.metadata, repaired: r.repaired.length, faulty: r.faulty.length, orphans: r.orphans.length });
}

export interface Running {
  grpc: grpc.Server;
  /** /metrics (when configured) and the devices gauge; its stop ends both. */
  http: MetricsEndpoint;
  driver: Driver;
  /** Stops the periodic pool checks and the pool's growth loop, and waits for a check in progress; never rejects. */
  stopChecks(): Promise<void>;
}

/** How often standalone mode checks its pool, as the node agent's resync does in Kubernetes mode. */
export const POOL_CHECK_MS = 60_000;

/**
 * Runs `check` now and then `everyMs` after each run ends, never two at once. A reconcile
 * that overran its interval is not stacked up behind itself.
 */
export function periodically(check: () => Promise<void>, everyMs: number): () => Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let current: Promise<void> = Promise.resolve();
  const tick = () => {
    current = check().finally(() => {
      if (!stopped) timer = setTimeout(tick, everyMs).unref();
    });
  };
  tick();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await current;
  };
}

export async function serveDriver(cfg: DriverConfig, driver: Driver, log: Logger, opts: { poolCheckMs?: number } = {}): Promise<Running> {
  const locks = new KeyedMutex();
  const server = await serve(cfg.endpoint, { identity: driver.identity, controller: driver.controller, node: driver.node, groupController: driver.groupController, snapshotMetadata: driver.snapshotMetadata }, { log, metrics: driver.metrics, locks });
  // The first right away (the start left the metadata out), all off the RPCs' path: a device an
  // RPC holds meanwhile is skipped, as in the agent's passes.
  const stopChecks = periodically(() => driver.checkPool(background, (id, fn) => locks.tryRun(id, fn))
    .then(() => undefined, (err: unknown) => { log.error('pool check failed', { pool: driver.pool.name, error: errorMessage(err) }); }), opts.poolCheckMs ?? POOL_CHECK_MS);
  driver.grower?.start();
  const http = await serveMetrics({
    address: cfg.metricsAddress, metrics: driver.metrics, log, healthy: probeHealthy(driver.identity), devices: driver.store,
  });
  return { grpc: server, http, driver, stopChecks: async () => { await Promise.all([stopChecks(), driver.grower?.stop()]); } };
}
