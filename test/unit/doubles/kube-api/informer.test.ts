// client-node's informer (makeInformer / ListWatch) against the kube test double,
// including the relist after a 410 on resume.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { CustomObjectsApi, ListWatch, makeInformer } from '@kubernetes/client-node';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { ApiDouble } from '../../../doubles/kube-api/index.ts';
import { GROUP, TV, VERSION, fileDouble, merge, thinVolume, waitFor } from './helpers.ts';

const PATH = `/apis/${GROUP}/${VERSION}/thinvolumes`;

interface Recorder {
  log: string[];
  errors: unknown[];
  informer: ListWatch<KubernetesObject>;
}

function record(d: ApiDouble, api: CustomObjectsApi, labelSelector?: string): Recorder {
  const listFn = async (): Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }> =>
    (await api.listClusterCustomObject({ ...TV, labelSelector })) as { items: KubernetesObject[] };
  const informer = makeInformer(d.kubeConfig(), PATH, listFn, labelSelector);
  // makeInformer's declared type hides ListWatch extras such as latestResourceVersion().
  assert.ok(informer instanceof ListWatch);
  const log: string[] = [];
  const errors: unknown[] = [];
  informer.on('add', (o) => log.push(`add ${o.metadata?.name ?? ''}`));
  informer.on('update', (o) => log.push(`update ${o.metadata?.name ?? ''}`));
  informer.on('delete', (o) => log.push(`delete ${o.metadata?.name ?? ''}`));
  informer.on('error', (e) => errors.push(e));
  return { log, errors, informer };
}

const { d, api } = await fileDouble();

describe('kube double: client-node informer', () => {
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const stop of stops) await stop();
  });

  it('lists, then follows add / update / delete', async () => {
    await api.createClusterCustomObject({ ...TV, body: thinVolume('i0', { set: 'a' }) });
    const r = record(d, api, 'set=a');
    stops.push(() => r.informer.stop());
    await r.informer.start();
    await waitFor(() => r.log.length === 1, 'initial add');
    await api.createClusterCustomObject({ ...TV, body: thinVolume('i1', { set: 'a' }) });
    await api.createClusterCustomObject({ ...TV, body: thinVolume('other', { set: 'b' }) });
    await api.patchClusterCustomObject({ ...TV, name: 'i1', body: { spec: { sizeBytes: 7 } } }, merge);
    await api.deleteClusterCustomObject({ ...TV, name: 'i0' });
    await waitFor(() => r.log.length === 4, 'four callbacks');
    assert.deepEqual(r.log, ['add i0', 'add i1', 'update i1', 'delete i0']);
    assert.deepEqual(r.informer.list().map((o) => o.metadata?.name), ['i1']);
    assert.equal(r.informer.latestResourceVersion(), d.resourceVersion());
    await r.informer.stop();
  });

  it('relists after compact() + dropWatches(): resume gets 410 Expired, the informer catches up', async () => {
    await api.createClusterCustomObject({ ...TV, body: thinVolume('keep', { set: 'c' }) });
    await api.createClusterCustomObject({ ...TV, body: thinVolume('gone', { set: 'c' }) });
    const r = record(d, api, 'set=c');
    stops.push(() => r.informer.stop());
    await r.informer.start();
    await waitFor(() => r.log.length === 2, 'initial adds');
    const lists = (): number => d.requests.filter((q) => q.verb === 'list' && q.path === PATH).length;
    const listsBefore = lists();
    const seenRv = r.informer.latestResourceVersion();
    const mark = d.requests.length;
    // While no watch is open: changes happen and the history is compacted past them.
    assert.equal(d.dropWatches(), 1);
    d.seed('thinvolumes', { metadata: { name: 'new', labels: { set: 'c' } }, spec: {} });
    d.remove('thinvolumes', 'gone');
    d.compact();
    await waitFor(() => r.log.length === 4, 'relist callbacks');
    assert.deepEqual(r.log.slice(2).sort(), ['add new', 'delete gone']);
    assert.equal(lists(), listsBefore + 1, 'exactly one relist');
    const watches = d.requests.slice(mark).filter((q) => q.verb === 'watch');
    assert.equal(watches[0]?.query['resourceVersion'], seenRv, 'first resumed from the old resourceVersion');
    await waitFor(() => d.watchCount() === 1, 'watch re-established', 4000);
    assert.deepEqual(r.errors, []);
    await api.patchClusterCustomObject({ ...TV, name: 'keep', body: { spec: { sizeBytes: 9 } } }, merge);
    await waitFor(() => r.log.length === 5, 'live update after relist');
    assert.equal(r.log[4], 'update keep');
    await r.informer.stop();
  });

  it('relists when the watch request itself answers HTTP 410 (failNext)', async () => {
    const r = record(d, api, 'set=d');
    stops.push(() => r.informer.stop());
    await r.informer.start();
    const mark = d.requests.length;
    d.failNext({ verb: 'watch', path: /thinvolumes$/, status: 410 });
    d.dropWatches();
    await waitFor(() => d.requests.slice(mark).some((q) => q.verb === 'list'), 'relist after HTTP 410');
    assert.deepEqual(d.requests.slice(mark).map((q) => `${q.verb} ${q.status ?? ''}`).slice(0, 2), ['watch 410', 'list 200']);
    assert.deepEqual(r.errors, []);
    await r.informer.stop();
  });

  it('reports an abrupt connection loss as an error and stops; start() resumes it', async () => {
    const r = record(d, api, 'set=e');
    stops.push(() => r.informer.stop());
    await r.informer.start();
    d.dropWatches({ abrupt: true });
    await waitFor(() => r.errors.length === 1, 'error callback');
    assert.equal(d.watchCount(), 0, 'client-node does not reconnect by itself after an error');
    d.seed('thinvolumes', { metadata: { name: 'e1', labels: { set: 'e' } }, spec: {} });
    await r.informer.start();
    await waitFor(() => r.log.includes('add e1'), 'event after restart');
    await r.informer.stop();
  });
});
