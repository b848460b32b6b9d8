// CrWatch's restart backoff when the API server is down (as during a kube-apiserver restart).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { CrWatch } from '../../../src/kube/watch.ts';
import type { Logger } from '../../../src/observability/log.ts';
import { sleep } from '../../../src/system/delay.ts';
import { startApiDouble } from '../../doubles/kube-api/index.ts';
import { loadCrds } from './harness.ts';

describe('CrWatch', () => {
  it('backs off between restarts when the agent leaves the restart delay unset (a down API server is not hammered)', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 'c', server: 'http://127.0.0.1:1', skipTLSVerify: true }], users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
    const delays: unknown[] = [];
    const log = { warn: (_m: string, meta: { in_ms: unknown }) => { delays.push(meta.in_ms); }, info() {}, debug() {}, error() {} } as unknown as Logger;
    // What the node agent passes when its own option is unset.
    const w = new CrWatch({ kc, api: kc.makeApiClient(CustomObjectsApi), plural: 'thinvolumes', labelSelector: 'a=b', log, onChange: () => undefined, restartBaseMs: undefined });
    await w.start();
    await sleep(600);
    await w.stop();
    assert.ok(delays.length >= 1 && delays.length <= 4, `restarts in 600 ms: ${delays.length}`);
    assert.ok(delays.every((d) => typeof d === 'number' && d >= 150), `delays ${JSON.stringify(delays)}`);
  });

  it("lists from the apiserver's watch cache (resourceVersion 0), not from etcd, with its label selector", async () => {
    const d = await startApiDouble({ crds: loadCrds() });
    try {
      const kc = d.kubeConfig();
      const w = new CrWatch({ kc, api: kc.makeApiClient(CustomObjectsApi), plural: 'thinvolumes', labelSelector: 'dmthin.csi.io/node=n1', log: { warn() {}, info() {}, debug() {}, error() {} } as unknown as Logger, onChange: () => undefined });
      await w.start();
      await w.stop();
      const lists = d.requests.filter((r) => r.verb === 'list' && r.path.endsWith('/thinvolumes'));
      assert.deepEqual(lists.map((r) => [r.query.resourceVersion, r.query.labelSelector]), [['0', 'dmthin.csi.io/node=n1']]);
    } finally {
      await d.close();
    }
  });
});
