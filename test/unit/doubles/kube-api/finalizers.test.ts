// The kube test double implements finalizers / deletionTimestamp like the real API server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Watch } from '@kubernetes/client-node';
import { GROUP, TV, VERSION, fileDouble, merge, rejectsWith, thinVolume, waitFor } from './helpers.ts';

interface Obj {
  metadata: { name: string; resourceVersion: string; generation: number; finalizers?: string[]; deletionTimestamp?: string; deletionGracePeriodSeconds?: number };
}
const FIN = 'dmthin.csi.io/protect';

const { d, api } = await fileDouble();

describe('kube double: finalizers and deletion', () => {

  it('keeps an object with finalizers, marks it deleting, deletes it when the finalizers go', async () => {
    const body = thinVolume('fin');
    body['metadata'] = { name: 'fin', finalizers: [FIN] };
    const created = (await api.createClusterCustomObject({ ...TV, body })) as Obj;
    const events: Array<[string, Obj]> = [];
    const watch = new Watch(d.kubeConfig());
    const ctl = await watch.watch(`/apis/${GROUP}/${VERSION}/thinvolumes`, { resourceVersion: created.metadata.resourceVersion },
      (type: string, obj: Obj) => events.push([type, obj]), () => undefined);
    try {
      const marked = (await api.deleteClusterCustomObject({ ...TV, name: 'fin' })) as Obj;
      assert.ok(marked.metadata.deletionTimestamp, 'delete returns the object with deletionTimestamp');
      assert.equal(marked.metadata.deletionGracePeriodSeconds, 0);
      assert.equal(marked.metadata.generation, 2);
      const again = (await api.deleteClusterCustomObject({ ...TV, name: 'fin' })) as Obj;
      assert.equal(again.metadata.resourceVersion, marked.metadata.resourceVersion, 'second delete is a no-op');
      const still = (await api.getClusterCustomObject({ ...TV, name: 'fin' })) as Obj;
      assert.equal(still.metadata.deletionTimestamp, marked.metadata.deletionTimestamp);
      const forbidden = await rejectsWith(api.patchClusterCustomObject({ ...TV, name: 'fin',
        body: { metadata: { finalizers: [FIN, 'other/new'] } } }, merge), 422);
      assert.equal(forbidden.reason, 'Invalid');
      assert.match(forbidden.message, /no new finalizers can be added if the object is being deleted/);
      const last = (await api.patchClusterCustomObject({ ...TV, name: 'fin', body: { metadata: { finalizers: null } } }, merge)) as Obj;
      assert.equal(last.metadata.finalizers, undefined);
      await rejectsWith(api.getClusterCustomObject({ ...TV, name: 'fin' }), 404);
      await waitFor(() => events.length >= 2, 'MODIFIED + DELETED events');
      assert.deepEqual(events.map(([t]) => t), ['MODIFIED', 'DELETED']);
      assert.ok(events[0]?.[1].metadata.deletionTimestamp);
      assert.equal(events[1]?.[1].metadata.resourceVersion, last.metadata.resourceVersion);
    } finally {
      ctl.abort();
    }
  });

  it('deletes at once without finalizers (Status Success) and honours delete preconditions', async () => {
    const created = (await api.createClusterCustomObject({ ...TV, body: thinVolume('plain') })) as Obj;
    const pre = { preconditions: { resourceVersion: '1' } };
    assert.equal((await rejectsWith(api.deleteClusterCustomObject({ ...TV, name: 'plain', body: pre }), 409)).reason, 'Conflict');
    const st = (await api.deleteClusterCustomObject({ ...TV, name: 'plain',
      body: { preconditions: { resourceVersion: created.metadata.resourceVersion } } })) as { kind: string; status: string };
    assert.deepEqual([st.kind, st.status], ['Status', 'Success']);
    await rejectsWith(api.deleteClusterCustomObject({ ...TV, name: 'plain' }), 404);
  });

  it('a replace emptying the finalizers of a deleting object deletes it', async () => {
    const body = thinVolume('fin2');
    body['metadata'] = { name: 'fin2', finalizers: [FIN, 'b/c'] };
    await api.createClusterCustomObject({ ...TV, body });
    await api.deleteClusterCustomObject({ ...TV, name: 'fin2' });
    const cur = (await api.getClusterCustomObject({ ...TV, name: 'fin2' })) as Obj;
    const one = (await api.replaceClusterCustomObject({ ...TV, name: 'fin2', body: { ...cur, metadata: { ...cur.metadata, finalizers: ['b/c'] } } })) as Obj;
    assert.deepEqual(one.metadata.finalizers, ['b/c']);
    assert.ok(d.object('thinvolumes', 'fin2'));
    await api.replaceClusterCustomObject({ ...TV, name: 'fin2', body: { ...one, metadata: { ...one.metadata, finalizers: [] } } });
    assert.equal(d.object('thinvolumes', 'fin2'), undefined);
  });

  it('does not cascade node deletion to anything', async () => {
    d.seed('nodes', { metadata: { name: 'worker-1' } });
    d.seed('thinpools', { metadata: { name: 'worker-1-pool', labels: { node: 'worker-1' } }, spec: {} });
    d.remove('nodes', 'worker-1');
    assert.equal(d.objects('nodes').length, 0);
    assert.equal(d.objects('thinpools').length, 1);
  });
});
