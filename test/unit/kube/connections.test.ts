// One connection pool per KubeConfig (src/kube/connections.ts): client-node 2.0 makes a new
// undici Agent, hence a new TLS connection, for every request.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubeConfig, RequestContext, HttpMethod } from '@kubernetes/client-node';
import { sharedConnections } from '../../../src/kube/connections.ts';

function config(token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: true }],
    users: [{ name: 'u', token }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  return kc;
}

async function dispatcherOf(kc: KubeConfig): Promise<unknown> {
  const ctx = new RequestContext('https://127.0.0.1:6443/api/v1/nodes', HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  return ctx.getDispatcher();
}

describe('kube connections', () => {
  it('client-node alone gives every request its own dispatcher (the defect)', async () => {
    const kc = config('t');
    assert.notEqual(await dispatcherOf(kc), await dispatcherOf(kc));
  });

  it('sharedConnections gives every request of a config the same one, and a new one when the TLS options change', async () => {
    const kc = sharedConnections(config('t'));
    const first = await dispatcherOf(kc);
    assert.ok(first);
    assert.equal(await dispatcherOf(kc), first);
    (kc.getCurrentCluster() as { skipTLSVerify: boolean }).skipTLSVerify = false; // the TLS options differ: a new pool
    assert.notEqual(await dispatcherOf(kc), first);
  });
});
