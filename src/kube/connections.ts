import type { KubeConfig } from '@kubernetes/client-node';

interface Closable { close(): Promise<void> }
type MakeDispatcher = (cluster: unknown, agentOptions: unknown) => Closable;

/**
 * Makes every request of `kc` share one connection pool. client-node 2.0 builds a new undici
 * Agent for each request, so each request opened its own TLS connection: most of the
 * controller's and the agents' CPU per volume went to handshakes (issue 25, the cluster bench).
 * The pool is made again when the TLS options change (a rotated client certificate); the old
 * one closes once its requests are done.
 */
export function sharedConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher: MakeDispatcher };
  const make = target.createDispatcher.bind(kc);
  let key: string | undefined;
  let pool: Closable | undefined;
  target.createDispatcher = (cluster, agentOptions) => {
    const k = JSON.stringify(kc.createDispatcherOptions(cluster as never, agentOptions as never));
    if (!pool || k !== key) {
      void pool?.close().catch(() => undefined);
      pool = make(cluster, agentOptions);
      key = k;
    }
    return pool;
  };
  return kc;
}
