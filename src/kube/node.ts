import { join } from 'node:path';
import { AuthenticationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { assembleNode, type NodeParts, type NodeSettings, type NodeSystem } from '../assemble.ts';
import { loadCsi } from '../csi/proto.ts';
import { implementStreams } from '../csi/server.ts';
import type { SnapshotMetadataRpcs } from '../csi/stream-rpcs.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { OpContext } from '../system/context.ts';
import { NodeAgent, type AgentOptions } from './agent.ts';
import { ChannelAuth, KubeTokenReviewer } from './channel/auth.ts';
import { loadOrCreateIdentity } from './channel/cert.ts';
import { ChannelServer } from './channel/server.ts';
import { keepListBounds, takeListBounds } from './list-bounds.ts';
import { CrdStore } from './crd-store.ts';
import { EventRecorder } from './events.ts';
import { wireGrowth } from './pool-growth.ts';

/** The node agent's end of the controller–node channel (src/kube/channel/). */
export interface NodeChannelParts {
  bindHost: string;
  /** 0: any free port (tests). */
  port: number;
  /** The host published with the bound port: the pod's IP. */
  publishHost: string;
  /** The controller's ServiceAccount user, the only caller admitted. */
  allowedUser: string;
}

export interface KubeNodeParts extends Omit<NodeSystem, 'clock'>, Omit<NodeSettings, 'nodeId'> {
  kc: KubeConfig;
  /** The Kubernetes node name: the node's id, and whose custom resources it keeps. */
  node: string;
  /** Timings for tests; production uses the agent's defaults. */
  agent?: Partial<Pick<AgentOptions, 'resyncMs' | 'retryBaseMs' | 'retryMaxMs' | 'watchRestartBaseMs' | 'opTimeoutMs'>>;
  channel?: NodeChannelParts;
  /** The SnapshotMetadata service the channel serves; default the pool's own (assembleNode's). */
  snapshotMetadata?: (store: CrdStore, parts: NodeParts) => SnapshotMetadataRpcs;
}

export interface KubeNode extends NodeParts {
  agent: NodeAgent;
  store: CrdStore;
  events: EventRecorder;
  /** The bound channel port, when the channel is served. */
  channelPort?: number;
  stop(): Promise<void>;
}

/** Node mode: the pool, its records in CRs, the agent that drives them, and the CSI Node service. */
export async function startKubeNode(ctx: OpContext, p: KubeNodeParts): Promise<KubeNode> {
  const api = p.kc.makeApiClient(CustomObjectsApi);
  const boundsFile = join(p.stateDir, 'list-bounds.json');
  const store = new CrdStore(api, p.node, p.pool.name, {
    source: p.pool.kind,
    ...(p.pool.kind === 'devices' ? { dataDevice: p.pool.dataDevice, metadataDevice: p.pool.metadataDevice } : {}),
  }, await takeListBounds(boundsFile));
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
  const snapshotMetadata = p.snapshotMetadata?.(store, parts) ?? parts.snapshotMetadata;
  const channel = p.channel ? await startChannel(p, p.channel, store, parts.metrics, snapshotMetadata) : undefined;
  return {
    ...parts, store, agent, events, ...(channel ? { channelPort: channel.port } : {}),
    stop: async () => {
      await channel?.server.stop();
      await Promise.all([agent.stop(), grower?.stop()]);
      await parts.pool.settled();
      await keepListBounds(boundsFile, store.listBounds()).catch((err: unknown) => p.log.warn('could not keep the list bounds; the next start lists by quorum', { error: String(err) }));
    },
  };
}

/** Serves the channel, then publishes where it listens and which certificate it shows. */
async function startChannel(p: KubeNodeParts, c: NodeChannelParts, store: CrdStore, metrics: Metrics, rpcs: SnapshotMetadataRpcs) {
  const identity = await loadOrCreateIdentity(join(p.stateDir, 'channel'), `dmthin-csi node ${p.node}`);
  const reviewer = new KubeTokenReviewer(p.kc.makeApiClient(AuthenticationV1Api));
  const server = new ChannelServer({ node: p.node, identity, auth: new ChannelAuth(reviewer, { allowedUser: c.allowedUser }), log: p.log });
  const def = loadCsi().csi.v1.SnapshotMetadata.service;
  server.host(def, implementStreams(def, rpcs, { log: p.log, metrics }));
  const port = await server.listen(c.bindHost, c.port);
  const host = c.publishHost.includes(':') ? `[${c.publishHost}]` : c.publishHost;
  await store.updatePoolStatus((s) => ({ ...s, channel: { address: `${host}:${port}`, fingerprint: identity.fingerprint, certificate: identity.certPem } }));
  return { server, port };
}
