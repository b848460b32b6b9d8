/**
 * SnapshotMetadata in Kubernetes mode. The external-snapshot-metadata sidecar calls the
 * controller, but the metadata lives in the pool of the snapshot's node: the controller's
 * forwarder finds that node (the ThinSnapshot's spec.nodeName) and runs the same call on the
 * node agent's channel, where the node's own SnapshotMetadataRpcs answers it.
 */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import type * as grpc from '@grpc/grpc-js';
import type { SnapshotMetadataRpcs } from '../../csi/stream-rpcs.ts';
import { invalidArgument, notFound } from '../../errors.ts';
import { apiStatus } from '../../status.ts';
import type { OpContext } from '../../system/context.ts';
import { parseId } from '../../volume/ids.ts';
import { isNotFound } from '../api.ts';
import { GROUP, PLURAL, VERSION, type ThinPoolCr, type ThinSnapshot } from '../types.ts';
import type { ChannelDialer, ChannelEndpoint } from './client.ts';
import { callStream } from './stream.ts';

/** The node whose pool holds a snapshot; undefined when no such snapshot exists. */
export type SnapshotLocator = (snapshotId: string) => Promise<string | undefined>;

async function readCluster<T>(api: CustomObjectsApi, plural: string, name: string): Promise<T | undefined> {
  try {
    return await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural, name }) as T;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw apiStatus(err, `reading ${plural}/${name}`);
  }
}

export function snapshotLocator(api: CustomObjectsApi): SnapshotLocator {
  return async (id) => (parseId(id)?.kind === 'snapshot' ? (await readCluster<ThinSnapshot>(api, PLURAL.snapshot, id))?.spec.nodeName : undefined);
}

/** The channel endpoint a node's agent published in its ThinPool status. */
export function publishedEndpoint(api: CustomObjectsApi): (node: string) => Promise<ChannelEndpoint | undefined> {
  return async (node) => (await readCluster<ThinPoolCr>(api, PLURAL.pool, node))?.status?.channel;
}

export interface ForwarderOptions {
  locate: SnapshotLocator;
  dialer: ChannelDialer;
  /** csi.v1.SnapshotMetadata as grpc-js describes it (loadCsi()). */
  service: grpc.ServiceDefinition;
}

/**
 * The controller's SnapshotMetadataRpcs: the node's stream passed through message by message
 * (the node reads on only as the sidecar takes each one), the sidecar's cancel and deadline
 * passed on to the node's call, and the node's status returned unchanged.
 */
export function snapshotMetadataForwarder(o: ForwarderOptions): SnapshotMetadataRpcs {
  const nodeOf = async (id: string, field: string): Promise<string> => {
    if (!id) throw invalidArgument(`${field} is required`);
    const node = await o.locate(id);
    if (node === undefined) throw notFound(`snapshot ${id} does not exist`);
    return node;
  };
  const forward = async <Req, Res>(method: string, node: string, ctx: OpContext, req: Req, send: (r: Res) => Promise<void>) => {
    const { client, metadata } = await o.dialer.dial(node);
    await callStream({ client, metadata, method: o.service[method]! }, ctx, req, send);
  };
  return {
    async GetMetadataAllocated(ctx, req, send) {
      await forward('GetMetadataAllocated', await nodeOf(req.snapshot_id, 'snapshot_id'), ctx, req, send);
    },
    async GetMetadataDelta(ctx, req, send) {
      const base = await nodeOf(req.base_snapshot_id, 'base_snapshot_id');
      const target = await nodeOf(req.target_snapshot_id, 'target_snapshot_id');
      // A volume and its snapshots live in one node's pool: snapshots on two nodes are of two volumes.
      if (base !== target) throw invalidArgument(`base snapshot ${req.base_snapshot_id} (node ${base}) and target snapshot ${req.target_snapshot_id} (node ${target}) are not snapshots of the same volume`);
      await forward('GetMetadataDelta', base, ctx, req, send);
    },
  };
}
