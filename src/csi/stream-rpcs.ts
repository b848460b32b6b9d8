import type { OpContext } from '../system/context.ts';
import type { GetMetadataAllocatedRequest__Output } from './generated/csi/v1/GetMetadataAllocatedRequest.ts';
import type { GetMetadataAllocatedResponse } from './generated/csi/v1/GetMetadataAllocatedResponse.ts';
import type { GetMetadataDeltaRequest__Output } from './generated/csi/v1/GetMetadataDeltaRequest.ts';
import type { GetMetadataDeltaResponse } from './generated/csi/v1/GetMetadataDeltaResponse.ts';

/**
 * A server-streaming RPC as the semantic layers implement it. Responses go out through `send`,
 * whose promise resolves when the transport can take more, so a slow reader slows the producer
 * instead of growing a buffer; `ctx.signal` aborts when the client cancels or the deadline passes.
 * The stream ends when the promise settles: resolved is OK, a rejection becomes the call's status.
 * One contract for every place that serves such an RPC: the CSI socket, a node agent's channel
 * and the controller's forwarder to it.
 */
export type StreamRpc<Req, Res> = (ctx: OpContext, req: Req, send: (res: Res) => Promise<void>) => Promise<void>;

/** The CSI SnapshotMetadata service (alpha since CSI v1.10). */
export interface SnapshotMetadataRpcs {
  GetMetadataAllocated: StreamRpc<GetMetadataAllocatedRequest__Output, GetMetadataAllocatedResponse>;
  GetMetadataDelta: StreamRpc<GetMetadataDeltaRequest__Output, GetMetadataDeltaResponse>;
}
