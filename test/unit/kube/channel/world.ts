/**
 * The channel's test world: the Kubernetes test world (API double, fake kernels, node agents)
 * with each agent serving its channel on loopback and a FakeSnapshotMetadata behind it, and the
 * controller's side: a CSI-like socket serving the forwarder, as `dmthin-csi controller` does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadCsi } from '../../../../src/csi/proto.ts';
import { CHANNEL_AUDIENCE } from '../../../../src/kube/channel/auth.ts';
import { ChannelDialer } from '../../../../src/kube/channel/client.ts';
import { publishedEndpoint, snapshotLocator, snapshotMetadataForwarder } from '../../../../src/kube/channel/snapshot-metadata.ts';
import { implementStreams } from '../../../../src/csi/server.ts';
import { silentLogger } from '../../../../src/observability/log.ts';
import { Metrics } from '../../../../src/observability/metrics.ts';
import { snapshotReq } from '../../../support/requests.ts';
import { createReq, deadline, world, type World } from '../harness.ts';
import { FakeSnapshotMetadata } from './fake-metadata.ts';

export const CONTROLLER_USER = 'system:serviceaccount:kube-system:dmthin-csi-controller';
export const service = () => loadCsi().csi.v1.SnapshotMetadata.service;

export interface ChannelWorld {
  w: World;
  fakes: Map<string, FakeSnapshotMetadata>;
  /** The controller's channel token (its ServiceAccount, the channel's audience). */
  token: string;
  dialer(token?: string): ChannelDialer;
  /** A client of the controller's socket, where the forwarder serves SnapshotMetadata. */
  controller: grpc.Client;
  snapshot(node: string, name: string): Promise<string>;
  close(): Promise<void>;
}

/** `poolService`: the agents serve their pool's own SnapshotMetadata (the production default), not the fakes. */
export async function channelWorld(nodes = ['n1', 'n2'], o: { poolService?: boolean } = {}): Promise<ChannelWorld> {
  const w = await world();
  const fakes = new Map<string, FakeSnapshotMetadata>();
  for (const n of nodes) {
    fakes.set(n, new FakeSnapshotMetadata());
    await w.startNode(n, {}, {
      channel: { bindHost: '127.0.0.1', port: 0, publishHost: '127.0.0.1', allowedUser: CONTROLLER_USER },
      ...(o.poolService ? {} : { snapshotMetadata: () => fakes.get(n)! }),
    });
  }
  const token = w.d.tokens.serviceAccount('kube-system', 'dmthin-csi-controller', [CHANNEL_AUDIENCE]);
  const api = w.d.kubeConfig().makeApiClient(CustomObjectsApi);
  const dialers: ChannelDialer[] = [];
  const dialer = (t = token) => {
    const d = new ChannelDialer({ lookup: publishedEndpoint(api), token: async () => t });
    dialers.push(d);
    return d;
  };
  const dir = mkdtempSync(join(tmpdir(), 'dmthin-channel-'));
  const server = new grpc.Server();
  server.addService(service(), implementStreams(service(), snapshotMetadataForwarder({ locate: snapshotLocator(api), dialer: dialer(), service: service() }), { log: silentLogger(), metrics: new Metrics() }));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${dir}/controller.sock`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const controller = new grpc.Client(`unix://${dir}/controller.sock`, grpc.credentials.createInsecure());
  return {
    w, fakes, token, dialer, controller,
    async snapshot(node, name) {
      const vol = (await w.controller.CreateVolume(deadline(), createReq(`pvc-${name}`, { node }))).volume!.volume_id!;
      return (await w.controller.CreateSnapshot(deadline(), snapshotReq(name, vol))).snapshot!.snapshot_id!;
    },
    async close() {
      controller.close();
      for (const d of dialers) d.close();
      server.forceShutdown();
      await w.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Collected { messages: Array<{ volume_capacity_bytes: number; block_metadata: Array<{ byte_offset: number; size_bytes: number }> }>; error?: grpc.ServiceError }

/** A server-streaming call read to its end; `onMessage` may pause the stream it is given. */
export function collect(client: grpc.Client, method: 'GetMetadataAllocated' | 'GetMetadataDelta', req: object,
  o: { metadata?: grpc.Metadata; deadline?: number; onMessage?: (s: grpc.ClientReadableStream<unknown>, n: number) => void } = {}): { stream: grpc.ClientReadableStream<unknown>; done: Promise<Collected> } {
  const m = service()[method]!;
  const stream = client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, req, o.metadata ?? new grpc.Metadata(), o.deadline ? { deadline: o.deadline } : {});
  const messages: Collected['messages'] = [];
  const done = new Promise<Collected>((resolve) => {
    stream.on('data', (d) => { messages.push(d as Collected['messages'][number]); o.onMessage?.(stream, messages.length); });
    stream.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    stream.on('end', () => resolve({ messages }));
  });
  return { stream, done };
}

export const ranges = (c: Collected) => c.messages.flatMap((m) => m.block_metadata.map((b) => [b.byte_offset, b.size_bytes]));
