// CrWatch's restart backoff when the API server is down (as during a kube-apiserver restart).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { CrWatch } from '../../../src/kube/watch.ts';
import type { Logger } from '../../../src/observability/log.ts';
import { sleep } from '../../../src/system/delay.ts';

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
});
