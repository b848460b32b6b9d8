import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../../src/csi/proto.ts';
import type { RpcName } from '../../src/csi/rpcs.ts';

type Unary = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

/** A promise-returning client for one CSI service; `call(method, req)` rejects with a grpc.ServiceError. */
export interface CsiServiceClient {
  call<T = Record<string, any>>(method: RpcName, req?: object, timeoutMs?: number): Promise<T>;
  close(): void;
}

function wrapClient(client: grpc.Client): CsiServiceClient {
  return {
    call<T>(method: RpcName, req: object = {}, timeoutMs = 120_000): Promise<T> {
      const fn = (client as unknown as Record<string, Unary>)[method];
      if (typeof fn !== 'function') return Promise.reject(new Error(`no such CSI method ${method}`));
      return new Promise<T>((resolve, reject) => {
        fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
      });
    },
    close: () => client.close(),
  };
}

export interface CsiClients { identity: CsiServiceClient; controller: CsiServiceClient; node: CsiServiceClient; group: CsiServiceClient; close(): void }

/** Clients for all four services on `endpoint` (unix:///path). */
export function connectCsi(endpoint: string): CsiClients {
  const csi = loadCsi().csi.v1;
  const creds = grpc.credentials.createInsecure();
  const identity = wrapClient(new csi.Identity(endpoint, creds));
  const controller = wrapClient(new csi.Controller(endpoint, creds));
  const node = wrapClient(new csi.Node(endpoint, creds));
  const group = wrapClient(new csi.GroupController(endpoint, creds));
  return { identity, controller, node, group, close: () => { identity.close(); controller.close(); node.close(); group.close(); } };
}

/**
 * Awaits a call that must fail, and returns its gRPC status code name: of a grpc.ServiceError
 * from a client, or of a CsiError thrown by a service called directly (both carry the number).
 */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? grpc.status[code] ?? String(code) : String(err);
  }
  return 'OK';
}

export { blockCap, mountCap } from './requests.ts';
export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
