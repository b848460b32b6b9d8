import type { Server } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { LocalBackend, LocalGroupBackend } from './controller/local-backend.ts';
import { ControllerService } from './controller/service.ts';
import { IdentityService } from './csi/identity.ts';
import { serve } from './csi/server.ts';
import type { DeviceMapper } from './devmapper/types.ts';
import type { LoopDevices, Mounter } from './mount/types.ts';
import { NodeService } from './node/service.ts';
import { nodeTargets } from './node/targets.ts';
import type { Logger } from './observability/log.ts';
import { Metrics } from './observability/metrics.ts';
import { serveMetrics } from './observability/http.ts';
import { Devices } from './pool/devices.ts';
import { ensurePool } from './pool/provision.ts';
import { reconcile, type Exclusive, type ReconcileReport } from './pool/reconcile.ts';
import { poolReadiness, ThinPool } from './pool/thinpool.ts';
import { background, type OpContext } from './system/context.ts';
import { KeyedMutex } from './system/lock.ts';
import { errorMessage } from './errors.ts';
import type { GroupStore, StateStore } from './state/types.ts';
import { GroupSnapshots } from './pool/group.ts';
import { GroupControllerService } from './controller/groups.ts';
import type { DriverConfig } from './cli/config.ts';
import { TOPOLOGY_KEY } from './version.ts';

/** The side effects a driver runs on: real ones in production, fakes in unit tests. */
export interface DriverParts {
  dm: DeviceMapper;
  mounter: Mounter;
  loops: LoopDevices;
  store: StateStore;
  /** Where group snapshots are recorded; without it the driver offers no GroupController. */
  groups?: GroupStore;
  log: Logger;
  metrics?: Metrics;
  /** Milliseconds, for the pool's reading ages; default performance.now (tests turn it by hand). */
  clock?: () => number;
}

export interface Driver {
  pool: ThinPool;
  devices: Devices;
  identity: IdentityService;
  controller: ControllerService;
  /** Present when the store keeps group records. */
  groupController?: GroupControllerService;
  node: NodeService;
  metrics: Metrics;
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
  const metrics = parts.metrics ?? new Metrics();
  const adopted = await ensurePool(ctx, { dm: parts.dm, loops: parts.loops, mounter: parts.mounter, log: parts.log }, cfg.pool);
  const deps = { dm: parts.dm, store: parts.store, log: parts.log, metrics, ...(parts.clock ? { clock: parts.clock } : {}) };
  const pool = await ThinPool.attach(ctx, deps, { name: cfg.pool.name, overprovisionRatio: cfg.overprovisionRatio }, adopted);
  const devices = new Devices(pool);
  const groups = parts.groups ? new GroupSnapshots(devices, parts.groups) : undefined;
  const startup = await reconcile(ctx, devices, { metadata: false, groups });
  logReport(parts.log, pool.name, startup);
  await refreshDeviceGauge(devices);
  const checkPool = async (c: OpContext, exclusive?: Exclusive) => {
    const report = await reconcile(c, devices, { exclusive, groups });
    logReport(parts.log, pool.name, report);
    return report;
  };
  const readiness = poolReadiness(pool);
  const backend = new LocalBackend(devices, cfg.nodeId, TOPOLOGY_KEY);
  return {
    pool, devices, metrics, startup, checkPool,
    identity: new IdentityService(readiness, true, groups !== undefined),
    controller: new ControllerService(backend, { fsType: cfg.defaultFs }),
    ...(groups ? { groupController: new GroupControllerService(backend, new LocalGroupBackend(groups)) } : {}),
    node: new NodeService(
      { devices, mounter: parts.mounter, defaultFs: cfg.defaultFs, targets: nodeTargets(cfg.stateDir), pathRoots: cfg.nodePathRoots },
      { nodeId: cfg.nodeId, topologyKey: TOPOLOGY_KEY },
    ),
  };
}

function logReport(log: Logger, pool: string, r: ReconcileReport): void {
  log.info('pool reconciled', { pool, tx: r.tx, metadata: r.metadata, repaired: r.repaired.length, faulty: r.faulty.length, orphans: r.orphans.length });
}

/** Volumes and snapshots by state, for the devices gauge. */
export async function refreshDeviceGauge(devices: Devices): Promise<void> {
  const counts = new Map<string, number>();
  for (const r of await devices.pool.deps.store.listDevices()) counts.set(`${r.kind}|${r.state}`, (counts.get(`${r.kind}|${r.state}`) ?? 0) + 1);
  devices.pool.deps.metrics.devices.reset();
  for (const [k, n] of counts) {
    const [kind, state] = k.split('|') as [string, string];
    devices.pool.deps.metrics.devices.set({ kind, state }, n);
  }
}

export interface Running {
  grpc: grpc.Server;
  http?: Server;
  driver: Driver;
  /** Stops the periodic pool checks and waits for one in progress; never rejects. */
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
  const server = await serve(cfg.endpoint, { identity: driver.identity, controller: driver.controller, node: driver.node, groupController: driver.groupController }, { log, metrics: driver.metrics, locks });
  // The first right away (the start left the metadata out), all off the RPCs' path: a device an
  // RPC holds meanwhile is skipped, as in the agent's passes.
  const stopChecks = periodically(() => driver.checkPool(background, (id, fn) => locks.tryRun(id, fn))
    .then(() => undefined, (err: unknown) => { log.error('pool check failed', { pool: driver.pool.name, error: errorMessage(err) }); }), opts.poolCheckMs ?? POOL_CHECK_MS);
  const http = cfg.metricsAddress
    ? await serveMetrics(cfg.metricsAddress, driver.metrics, log, async () => (await driver.identity.Probe({})).ready.value)
    : undefined;
  const timer = setInterval(() => { void refreshDeviceGauge(driver.devices).catch(() => undefined); }, 15_000);
  timer.unref();
  return { grpc: server, http, driver, stopChecks };
}
