import { IdentityService } from './csi/identity.ts';
import type { SnapshotMetadataRpcs } from './csi/stream-rpcs.ts';
import type { ThinMetadataReader } from './devmapper/thin-tools.ts';
import type { DeviceMapper } from './devmapper/types.ts';
import type { FsType, LoopDevices, Mounter } from './mount/types.ts';
import { NodeService } from './node/service.ts';
import { createSnapshotMetadata } from './node/snapshot-metadata.ts';
import { nodeTargets } from './node/targets.ts';
import type { Logger } from './observability/log.ts';
import { Metrics } from './observability/metrics.ts';
import { Devices } from './pool/devices.ts';
import { backingShortfall, realBackingFs, type BackingFs } from './pool/backing.ts';
import { backingOf, type GrowthSettings, PoolGrower } from './pool/grow.ts';
import { PoolMetadata } from './pool/metadata-snap.ts';
import { ensurePool, loopFiles, type PoolSource } from './pool/provision.ts';
import { poolReadiness, ThinPool } from './pool/thinpool.ts';
import type { OpContext } from './system/context.ts';
import type { StateStore } from './state/types.ts';
import { TOPOLOGY_KEY } from './version.ts';

/** The side effects a node's parts run on: real ones in production, fakes in unit tests. */
export interface NodeSystem {
  dm: DeviceMapper;
  mounter: Mounter;
  loops: LoopDevices;
  log: Logger;
  metrics?: Metrics;
  /** Milliseconds, for the pool's reading ages; default performance.now (tests turn it by hand). */
  clock?: () => number;
  /**
   * The filesystem under a file pool (capacity is bounded by it); default the real one for a
   * pool of loop files (--loop-*), none for a pool on devices.
   */
  backing?: BackingFs;
  /** Reads block maps from the pool's metadata; default thin-provisioning-tools (ThinTools). */
  metadataReader?: ThinMetadataReader;
}

/** What both modes configure alike for the node's pool and its CSI Node service. */
export interface NodeSettings {
  /** The topology value and NodeGetInfo's id; the Kubernetes node name in node mode. */
  nodeId: string;
  pool: PoolSource;
  overprovisionRatio: number;
  defaultFs: FsType;
  /** Holds the node's records of the publish targets it created (`--state-dir`). */
  stateDir: string;
  /** `--node-path-root`: where staging and target paths may lie (empty: anywhere). */
  nodePathRoots: readonly string[];
  /** `--pool-grow-max`: automatic growth of a file pool, up to this size. */
  growth?: GrowthSettings;
}

/** The Identity capabilities beside the Node service: a mode that serves a Controller says so. */
export interface Offers {
  controller: boolean;
  groupController?: boolean;
  /** This socket serves the SnapshotMetadata service (standalone; in Kubernetes the controller forwards it). */
  snapshotMetadata?: boolean;
}

export interface NodeParts {
  /** The records the pool was attached over. */
  store: StateStore;
  pool: ThinPool;
  devices: Devices;
  metrics: Metrics;
  identity: IdentityService;
  node: NodeService;
  /** Grows the pool online; absent for an adopted pool (the driver knows none of its devices). */
  grower?: PoolGrower;
  /** The pool's block maps, read from its metadata snapshot. */
  metadata: PoolMetadata;
  /** Changed-block tracking over this node's pool: whoever serves it (CSI socket, node agent) serves this. */
  snapshotMetadata: SnapshotMetadataRpcs;
}

/**
 * The parts standalone and Kubernetes node mode share: the pool built (or adopted) and attached
 * over `store`, its devices, an Identity ready while the pool can serve, and the CSI Node service.
 */
export async function assembleNode(ctx: OpContext, s: NodeSettings, sys: NodeSystem, store: StateStore, offers: Offers): Promise<NodeParts> {
  const metrics = sys.metrics ?? new Metrics();
  const backing = sys.backing ?? (s.pool.kind === 'loop' ? realBackingFs : undefined);
  const adopted = await ensurePool(ctx, { dm: sys.dm, loops: sys.loops, mounter: sys.mounter, log: sys.log, ...(backing ? { backing } : {}) }, s.pool);
  const grower = await poolGrower(ctx, s, sys, metrics, backing);
  // A growth a crash cut short (file grown, table not) is finished before the pool is read, and
  // a file pool takes a larger --loop-data-size (an adopted pool's file is not touched before).
  if (s.pool.kind === 'loop') grower?.request(s.pool.dataBytes);
  await grower?.converge(ctx);
  const files = s.pool.kind === 'loop' ? loopFiles(s.pool.dir) : undefined;
  const deps = { dm: sys.dm, store, log: sys.log, metrics, ...(sys.clock ? { clock: sys.clock } : {}), ...(backing ? { backing } : {}), ...(files ? { backingFiles: files } : {}) };
  const pool = await ThinPool.attach(ctx, deps, { name: s.pool.name, overprovisionRatio: s.overprovisionRatio }, adopted);
  grower?.attached((fn) => pool.serialised(fn), (c) => pool.health(c));
  const short = backingShortfall(pool.backing);
  if (short) sys.log.warn('the node\'s filesystem cannot hold the configured file pool', { pool: pool.name, detail: short });
  const devices = new Devices(pool);
  const metadata = new PoolMetadata(pool, sys.metadataReader);
  await metadata.releaseStale(ctx);
  return {
    store, pool, devices, metrics, metadata, ...(grower ? { grower } : {}),
    snapshotMetadata: createSnapshotMetadata({ store, metadata }),
    identity: new IdentityService(poolReadiness(pool), offers.controller, offers.groupController ?? false, offers.snapshotMetadata ?? false),
    node: new NodeService(
      { devices, mounter: sys.mounter, defaultFs: s.defaultFs, targets: nodeTargets(s.stateDir), pathRoots: s.nodePathRoots },
      { nodeId: s.nodeId, topologyKey: TOPOLOGY_KEY },
    ),
  };
}

async function poolGrower(ctx: OpContext, s: NodeSettings, sys: NodeSystem, metrics: Metrics, fs: BackingFs | undefined): Promise<PoolGrower | undefined> {
  const backing = await backingOf(ctx, sys.loops, s.pool);
  if (!backing) return undefined;
  return new PoolGrower({ dm: sys.dm, loops: sys.loops, mounter: sys.mounter, log: sys.log, metrics, ...(fs ? { fs } : {}) }, s.pool.name, backing, s.growth ?? {});
}

/** /healthz's answer where the Identity's Probe says whether the node can serve. */
export function probeHealthy(identity: IdentityService): () => Promise<boolean> {
  return async () => (await identity.Probe({})).ready.value;
}
