// Failure injection and the request log of the kube test double, seen through client-node.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoreV1Api, PatchStrategy, makeInformer, setHeaderOptions } from '@kubernetes/client-node';
import type { KubernetesObject } from '@kubernetes/client-node';
import { GROUP, TV, VERSION, fileDouble, rejectsWith, thinVolume, waitFor } from './helpers.ts';

const { d, api } = await fileDouble();

describe('kube double: failNext and the request log', () => {

  it('injects a 500 on the next list only', async () => {
    d.failNext({ verb: 'list', status: 500 });
    const st = await rejectsWith(api.listClusterCustomObject({ ...TV }), 500);
    assert.deepEqual([st.kind, st.reason, st.code], ['Status', 'InternalError', 500]);
    await api.listClusterCustomObject({ ...TV });
  });

  it('injects a 409 Conflict on matching updates `times` times, by verb and path', async () => {
    const obj = (await api.createClusterCustomObject({ ...TV, body: thinVolume('fx') })) as Record<string, unknown>;
    d.failNext({ verb: 'update', path: /\/thinvolumes\/fx$/, status: 409, times: 2 });
    await rejectsWith(api.replaceClusterCustomObject({ ...TV, name: 'fx', body: obj }), 409);
    const st = await rejectsWith(api.replaceClusterCustomObject({ ...TV, name: 'fx', body: obj }), 409);
    assert.equal(st.reason, 'Conflict');
    await api.replaceClusterCustomObject({ ...TV, name: 'fx', body: obj });
  });

  it('matches HTTP methods too and accepts a custom reason / message', async () => {
    d.failNext({ verb: 'PATCH', status: 429, reason: 'TooManyRequests', message: 'slow down' });
    const body = { metadata: { labels: { a: 'b' } } };
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const st = await rejectsWith(api.patchClusterCustomObject({ ...TV, name: 'fx', body }, merge), 429);
    assert.deepEqual([st.reason, st.message], ['TooManyRequests', 'slow down']);
    await api.patchClusterCustomObject({ ...TV, name: 'fx', body }, merge);
  });

  it('reaches typed APIs (CoreV1Api) and informer list functions', async () => {
    const core = d.kubeConfig().makeApiClient(CoreV1Api);
    d.failNext({ verb: 'get', path: /^\/api\/v1\/nodes\//, status: 503 });
    await rejectsWith(core.readNode({ name: 'any' }), 503);
    d.failNext({ verb: 'list', path: /thinvolumes$/, status: 500 });
    const listFn = async (): Promise<{ items: KubernetesObject[] }> =>
      (await api.listClusterCustomObject({ ...TV })) as { items: KubernetesObject[] };
    const inf = makeInformer(d.kubeConfig(), `/apis/${GROUP}/${VERSION}/thinvolumes`, listFn);
    const errors: unknown[] = [];
    inf.on('error', (e) => errors.push(e));
    await inf.start();
    await waitFor(() => errors.length === 1, 'informer error');
    assert.equal((errors[0] as { code?: number }).code, 500);
    await inf.stop();
  });

  it('records every request with method, path, query, verb and status', async () => {
    d.requests.length = 0;
    await api.listClusterCustomObject({ ...TV, labelSelector: 'a=b' });
    await rejectsWith(api.getClusterCustomObject({ ...TV, name: 'absent' }), 404);
    assert.deepEqual(d.requests, [
      { method: 'GET', path: `/apis/${GROUP}/${VERSION}/thinvolumes`, query: { labelSelector: 'a=b' }, verb: 'list', status: 200 },
      { method: 'GET', path: `/apis/${GROUP}/${VERSION}/thinvolumes/absent`, query: {}, verb: 'get', status: 404 },
    ]);
  });
});
