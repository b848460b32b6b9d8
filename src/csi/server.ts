import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument, CsiError, Code } from '../errors.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { KeyedMutex } from '../system/lock.ts';
import { loadCsi } from './proto.ts';
import type { ControllerRpcs, GroupControllerRpcs, IdentityRpcs, NodeRpcs } from './rpcs.ts';
import type { SnapshotMetadataRpcs, StreamRpc } from './stream-rpcs.ts';
import { wrapStream } from './stream-wrap.ts';
import { wrap, type Handler } from './wrap.ts';

export interface Services {
  identity: IdentityRpcs;
  controller?: ControllerRpcs;
  /** The GroupController, when the backend offers group snapshots. */
  groupController?: GroupControllerRpcs;
  node?: NodeRpcs;
  /** The SnapshotMetadata service (changed-block tracking), where this socket answers it. */
  snapshotMetadata?: SnapshotMetadataRpcs;
}

/** unix:///path, unix:/path, or a bare absolute path; the sidecars' CSI_ENDPOINT convention. */
export function socketPath(endpoint: string): string {
  // unix://name (no third slash) is an authority, not a path: refuse it rather than bind /name.
  const m = /^unix:(?:\/\/(?=\/))?(\/(?!\/).*)$/.exec(endpoint) ?? /^(\/(?!\/).*)$/.exec(endpoint);
  if (!m) throw invalidArgument(`CSI endpoint "${endpoint}" must be unix:///absolute/path`);
  return m[1]!;
}

/**
 * Every method of `def`, by the proto's name; a method `impl` lacks answers UNIMPLEMENTED. The
 * Services types hold `impl` to the proto's names and signatures, so a misspelt RPC fails to compile.
 */
function implement(def: grpc.ServiceDefinition, impl: object | undefined, deps: { log: Logger; metrics: Metrics; locks: KeyedMutex }) {
  const out: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(def)) {
    const fn = impl ? (impl as Record<string, unknown>)[method] : undefined;
    const handler: Handler = typeof fn === 'function'
      ? (ctx, req) => (fn as Handler).call(impl, ctx, req)
      : () => { throw new CsiError(Code.UNIMPLEMENTED, `${method} is not implemented by this driver`); };
    out[method] = wrap(method, handler, deps);
  }
  return out;
}

/** The SnapshotMetadata service's streaming methods, each through wrapStream (also what a node agent's channel hosts). */
export function implementStreams(def: grpc.ServiceDefinition, impl: SnapshotMetadataRpcs, deps: { log: Logger; metrics: Metrics }): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(def)) {
    const fn = (impl as unknown as Record<string, StreamRpc<never, never>>)[method]!;
    out[method] = wrapStream(method, (ctx, req, send) => fn.call(impl, ctx, req, send), deps);
  }
  return out;
}

/**
 * Serves the CSI services on a unix socket that only root may open (mode 0600). `locks` are
 * the per-volume locks, given when something besides the RPCs (the node agent) acts on devices.
 */
export async function serve(endpoint: string, services: Services, deps: { log: Logger; metrics: Metrics; locks?: KeyedMutex }): Promise<grpc.Server> {
  const path = socketPath(endpoint);
  const csi = loadCsi().csi.v1;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  const d = { ...deps, locks: deps.locks ?? new KeyedMutex() };
  server.addService(csi.Identity.service, implement(csi.Identity.service, services.identity, d));
  server.addService(csi.Controller.service, implement(csi.Controller.service, services.controller, d));
  server.addService(csi.Node.service, implement(csi.Node.service, services.node, d));
  if (services.groupController) server.addService(csi.GroupController.service, implement(csi.GroupController.service, services.groupController, d));
  if (services.snapshotMetadata) server.addService(csi.SnapshotMetadata.service, implementStreams(csi.SnapshotMetadata.service, services.snapshotMetadata, d));
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true }); // a socket left by a killed process would block the bind
  // The umask makes the socket 0600 from its first moment; chmod only confirms it.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);
  deps.log.info('serving CSI', { endpoint: `unix://${path}` });
  return server;
}
