/**
 * The node agent's end of the controller–node channel: gRPC over TLS on a port of the node
 * agent's pod, hosting any service (SnapshotMetadata first), every call admitted only for the
 * controller's ServiceAccount (auth.ts) and only when it was meant for this node.
 *
 * Bulk data (a volume moved between nodes) will be another service on the same server: the
 * receiving agent calls the sending one with a server-streaming RPC of fixed-size chunks (offset,
 * bytes, checksum), the sender reading the device chunk by chunk as the StreamRpc `send`
 * resolves (stream.ts), so HTTP/2 flow control paces the disk read to the network and the
 * receiver's writes; a resumed move asks again from the first offset it has not confirmed,
 * as SnapshotMetadata's starting_offset does. TLS gives it confidentiality and integrity, the
 * pinned certificate the sender's identity, the token the caller's.
 */
import * as grpc from '@grpc/grpc-js';
import { failedPrecondition } from '../../errors.ts';
import type { Logger } from '../../observability/log.ts';
import { toStatus } from '../../status.ts';
import type { ChannelAuth } from './auth.ts';
import type { ChannelIdentity } from './cert.ts';

/** Metadata key naming the node a call is meant for: two agents cloned with one key are still told apart. */
export const NODE_HEADER = 'x-dmthin-node';

export interface ChannelServerOptions {
  node: string;
  identity: ChannelIdentity;
  auth: ChannelAuth;
  log: Logger;
}

/** Every call waits here for its caller's verdict before any handler sees it. */
function admission(o: ChannelServerOptions): grpc.ServerInterceptor {
  return (method, call) => new grpc.ServerInterceptingCall(call, {
    start: (next) => next({
      onReceiveMetadata: (metadata, mdNext) => {
        const auth = metadata.get('authorization')[0];
        const meant = metadata.get(NODE_HEADER)[0];
        const checked = meant === o.node ? o.auth.check(typeof auth === 'string' ? auth : undefined)
          : Promise.reject(failedPrecondition(`this is node ${o.node}'s agent, the call was meant for ${String(meant ?? 'no node')}`));
        checked.then(() => mdNext(metadata), (err: unknown) => {
          const e = toStatus(err);
          o.log.warn('channel call refused', { rpc: method.path, peer: call.getPeer(), code: e.code, error: e.message });
          call.sendStatus({ code: e.code, details: e.details, metadata: new grpc.Metadata() });
        });
      },
    }),
  });
}

export class ChannelServer {
  private readonly server: grpc.Server;
  private readonly o: ChannelServerOptions;

  constructor(o: ChannelServerOptions) {
    this.o = o;
    this.server = new grpc.Server({ interceptors: [admission(o)], 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  }

  host(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): void {
    this.server.addService(def, impl);
  }

  /** Binds host:port (port 0: any free one) and returns the port bound. */
  async listen(host: string, port: number): Promise<number> {
    const creds = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(this.o.identity.keyPem), cert_chain: Buffer.from(this.o.identity.certPem) }], false);
    const bound = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.o.log.info('serving the node channel', { address: `${host}:${bound}`, fingerprint: this.o.identity.fingerprint });
    return bound;
  }

  /** Lets running calls finish for `graceMs`, then cuts them. */
  async stop(graceMs = 5000): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.server.forceShutdown(); resolve(); }, graceMs);
      this.server.tryShutdown(() => { clearTimeout(t); resolve(); });
    });
  }
}
