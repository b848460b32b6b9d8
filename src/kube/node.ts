import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { assembleNode, type NodeParts, type NodeSettings, type NodeSystem } from '../assemble.ts';
import type { OpContext } from '../system/context.ts';
import { NodeAgent, type AgentOptions } from './agent.ts';
import { CrdStore } from './crd-store.ts';
import { EventRecorder } from './events.ts';
import { wireGrowth } from './pool-growth.ts';

export interface KubeNodeParts extends Omit<NodeSystem, 'clock'>, Omit<NodeSettings, 'nodeId'> {
  kc: KubeConfig;
  /** The Kubernetes node name: the node's id, and whose custom resources it keeps. */
  node: string;
  /** Timings for tests; production uses the agent's defaults. */
  agent?: Partial<Pick<AgentOptions, 'resyncMs' | 'retryBaseMs' | 'retryMaxMs' | 'watchRestartBaseMs' | 'opTimeoutMs'>>;
}

export interface KubeNode extends NodeParts {
  agent: NodeAgent;
  store: CrdStore;
  events: EventRecorder;
  stop(): Promise<void>;
}

/** Node mode: the pool, its records in CRs, the agent that drives them, and the CSI Node service. */
export async function startKubeNode(ctx: OpContext, p: KubeNodeParts): Promise<KubeNode> {
  const api = p.kc.makeApiClient(CustomObjectsApi);
  const store = new CrdStore(api, p.node, p.pool.name, {
    source: p.pool.kind,
    ...(p.pool.kind === 'devices' ? { dataDevice: p.pool.dataDevice, metadataDevice: p.pool.metadataDevice } : {}),
  });
  await store.readPool(); // the ThinPool exists from the first moment, so kubectl shows the node
  const parts = await assembleNode(ctx, { ...p, nodeId: p.node }, p, store, { controller: false });
  const events = new EventRecorder(p.kc.makeApiClient(CoreV1Api), 'dmthin-csi-node', p.node, p.log);
  const { grower } = parts;
  const changed = { poolChanged: () => {} }; // the agent's, once it exists
  const onPool = grower ? wireGrowth(grower, events, p.node, () => changed.poolChanged()) : undefined;
  const agent = new NodeAgent({ kc: p.kc, api, node: p.node, store, devices: parts.devices, events, log: p.log, ...p.agent, ...(onPool ? { onPool } : {}) });
  changed.poolChanged = () => agent.poolChanged();
  await agent.start();
  grower?.start();
  return {
    ...parts, store, agent, events,
    stop: async () => { await Promise.all([agent.stop(), grower?.stop()]); await parts.pool.settled(); },
  };
}
