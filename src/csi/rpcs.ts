import type * as grpc from '@grpc/grpc-js';
import type { OpContext } from '../system/context.ts';
import type { ControllerHandlers } from './generated/csi/v1/Controller.ts';
import type { GroupControllerHandlers } from './generated/csi/v1/GroupController.ts';
import type { IdentityHandlers } from './generated/csi/v1/Identity.ts';
import type { NodeHandlers } from './generated/csi/v1/Node.ts';

/**
 * The RPCs of a generated `*Handlers` interface as the semantic layers implement them: the
 * decoded request in, the response (or its promise) out. The index signature grpc-js's
 * UntypedServiceImplementation brings is dropped, or any name would type-check.
 */
export type Rpcs<H> = {
  [K in keyof H as string extends K ? never : K]: H[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (ctx: OpContext, req: Req) => Promise<Res> | Res
    : never;
};

/**
 * A service whose RPCs are all implemented except `Absent`: those are typed as never there, so
 * the server keeps answering UNIMPLEMENTED for them until someone removes them from the list.
 */
export type Service<H, Absent extends keyof Rpcs<H> = never> = Omit<Rpcs<H>, Absent> & { readonly [K in Absent]?: never };

/**
 * Controller RPCs this driver leaves UNIMPLEMENTED, as the spec asks of a plugin without the
 * matching capability (PUBLISH_UNPUBLISH_VOLUME, MODIFY_VOLUME).
 */
export const CONTROLLER_UNIMPLEMENTED = ['ControllerPublishVolume', 'ControllerUnpublishVolume', 'ControllerModifyVolume'] as const;

export type IdentityRpcs = Service<IdentityHandlers>;
export type ControllerRpcs = Service<ControllerHandlers, (typeof CONTROLLER_UNIMPLEMENTED)[number]>;
export type GroupControllerRpcs = Service<GroupControllerHandlers>;
export type NodeRpcs = Service<NodeHandlers>;

type AllRpcs = Rpcs<IdentityHandlers> & Rpcs<ControllerHandlers> & Rpcs<GroupControllerHandlers> & Rpcs<NodeHandlers>;

/** The name of any CSI RPC. */
export type RpcName = keyof AllRpcs;

/** The decoded request of RPC `M` (any CSI request, for the union of names). */
export type RequestOf<M extends RpcName> = M extends RpcName ? Parameters<AllRpcs[M]>[1] : never;
