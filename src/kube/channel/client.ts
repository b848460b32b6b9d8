/**
 * The controller's end of the channel: dials a node's agent by node name. Where it listens and
 * which certificate it holds come from the node's ThinPool status (written only by that node's
 * ServiceAccount); the TLS handshake must present exactly that certificate (its SHA-256
 * fingerprint is compared; no CA, no hostname), and every call carries the controller's token
 * and the node it is meant for.
 */
import { readFile } from 'node:fs/promises';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { unavailable } from '../../errors.ts';
import { NODE_HEADER } from './server.ts';

/** What an agent publishes in its ThinPool status.channel. */
export interface ChannelEndpoint {
  /** host:port, host an IP (the pod's) or a name. */
  address: string;
  fingerprint: string;
  /** PEM: the trust anchor TLS needs to accept a self-signed peer at all; the fingerprint is the pin. */
  certificate: string;
}

export type EndpointLookup = (node: string) => Promise<ChannelEndpoint | undefined>;

export interface ChannelDialerOptions {
  lookup: EndpointLookup;
  /** The controller's current token (projected tokens rotate: read it again, not once). */
  token: () => Promise<string>;
}

/** A token file re-read at most every `maxAgeMs` (the kubelet rotates projected tokens well before they expire). */
export function tokenFile(path: string, maxAgeMs = 60_000, now = Date.now): () => Promise<string> {
  let cached: { at: number; token: Promise<string> } | undefined;
  return () => {
    if (!cached || now() - cached.at > maxAgeMs) {
      const token = readFile(path, 'utf8').then((t) => t.trim());
      token.catch(() => { cached = undefined; });
      cached = { at: now(), token };
    }
    return cached.token;
  };
}

function pinned(fingerprint: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => (cert.fingerprint256 === fingerprint ? undefined
    : new Error(`the peer's certificate ${cert.fingerprint256} is not the published ${fingerprint}`));
}

interface Dialed { key: string; client: grpc.Client }

export class ChannelDialer {
  private readonly o: ChannelDialerOptions;
  private readonly clients = new Map<string, Dialed>();

  constructor(o: ChannelDialerOptions) { this.o = o; }

  /**
   * A client for `node`'s agent, reused while the published endpoint stays the same (an agent
   * restarted in a new pod publishes a new address: the next call dials that).
   */
  async dial(node: string): Promise<{ client: grpc.Client; metadata: grpc.Metadata }> {
    const ep = await this.o.lookup(node);
    if (!ep) throw unavailable(`node ${node}'s agent publishes no channel endpoint (not running, or an older version)`);
    const key = `${ep.address}|${ep.fingerprint}`;
    let d = this.clients.get(node);
    if (d?.key !== key) {
      d?.client.close();
      // A fixed TLS name: SNI may not be an IP, and the pin, not the name, identifies the peer.
      d = { key, client: new grpc.Client(ep.address, this.credentials(ep), { 'grpc.ssl_target_name_override': 'dmthin-csi-node' }) };
      this.clients.set(node, d);
    }
    const metadata = new grpc.Metadata();
    metadata.set(NODE_HEADER, node);
    return { client: d.client, metadata };
  }

  private credentials(ep: ChannelEndpoint): grpc.ChannelCredentials {
    const tls = grpc.credentials.createSsl(Buffer.from(ep.certificate), null, null, { checkServerIdentity: pinned(ep.fingerprint) });
    const token = grpc.credentials.createFromMetadataGenerator((_params, cb) => {
      this.o.token().then((t) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${t}`);
        cb(null, md);
      }, (err: unknown) => cb(err as Error));
    });
    return grpc.credentials.combineChannelCredentials(tls, token);
  }

  close(): void {
    for (const d of this.clients.values()) d.client.close();
    this.clients.clear();
  }
}
