import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { DeviceMapper } from '../devmapper/types.ts';
import type { LoopDevices, Mounter } from '../mount/types.ts';
import type { FsType } from '../mount/types.ts';
import { NodeService } from '../node/service.ts';
import { nodeTargets } from '../node/targets.ts';
import type { Logger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { Devices } from '../pool/devices.ts';
import { ensurePool, type PoolSource } from '../pool/provision.ts';
import { poolReadiness, ThinPool } from '../pool/thinpool.ts';
import type { OpContext } from '../system/context.ts';
import { IdentityService } from '../csi/identity.ts';
import { TOPOLOGY_KEY } from '../version.ts';
import { NodeAgent, type AgentOptions } from './agent.ts';
import { CrdStore } from './crd-store.ts';
import { EventRecorder } from './events.ts';

export interface KubeNodeParts {
  kc: KubeConfig;
  node: string;
  dm: DeviceMapper;
  mounter: Mounter;
  loops: LoopDevices;
  log: Logger;
  metrics?: Metrics;
  pool: PoolSource;
  overprovisionRatio: number;
  defaultFs: FsType;
  /** Holds the node's records of the publish targets it created (`--state-dir`). */
  stateDir: string;
  /** `--node-path-root`: where staging and target paths may lie (empty: anywhere). */
  nodePathRoots: readonly string[];
  /** Timings for tests; production uses the agent's defaults. */
  agent?: Partial<Pick<AgentOptions, 'resyncMs' | 'retryBaseMs' | 'retryMaxMs' | 'watchRestartBaseMs' | 'opTimeoutMs'>>;
}

export interface KubeNode {
  agent: NodeAgent;
  store: CrdStore;
  devices: Devices;
  identity: IdentityService;
  node: NodeService;
  metrics: Metrics;
  events: EventRecorder;
  stop(): Promise<void>;
}

/** Node mode: the pool, its records in CRs, the agent that drives them, and the CSI Node service. */
export async function startKubeNode(ctx: OpContext, p: KubeNodeParts): Promise<KubeNode> {
  const metrics = p.metrics ?? new Metrics();
  const api = p.kc.makeApiClient(CustomObjectsApi);
  const store = new CrdStore(api, p.node, p.pool.name, {
    source: p.pool.kind,
    ...(p.pool.kind === 'devices' ? { dataDevice: p.pool.dataDevice, metadataDevice: p.pool.metadataDevice } : {}),
  });
  await store.readPool(); // the ThinPool exists from the first moment, so kubectl shows the node
  const adopted = await ensurePool(ctx, { dm: p.dm, loops: p.loops, mounter: p.mounter, log: p.log }, p.pool);
  const pool = await ThinPool.attach(ctx, { dm: p.dm, store, log: p.log, metrics }, { name: p.pool.name, overprovisionRatio: p.overprovisionRatio }, adopted);
  const devices = new Devices(pool);
  const events = new EventRecorder(p.kc.makeApiClient(CoreV1Api), 'dmthin-csi-node', p.node, p.log);
  const agent = new NodeAgent({ kc: p.kc, api, node: p.node, store, devices, events, log: p.log, ...p.agent });
  await agent.start();
  const readiness = poolReadiness(pool);
  return {
    agent, store, devices, metrics, events,
    identity: new IdentityService(readiness, false),
    node: new NodeService(
      { devices, mounter: p.mounter, defaultFs: p.defaultFs, targets: nodeTargets(p.stateDir), pathRoots: p.nodePathRoots },
      { nodeId: p.node, topologyKey: TOPOLOGY_KEY },
    ),
    stop: async () => { await agent.stop(); await pool.settled(); },
  };
}
