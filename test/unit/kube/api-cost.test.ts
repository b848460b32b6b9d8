// What one volume costs the API server (issue 25): the writes of its life, the controller waking
// on watch events instead of polling, and the watch counters the cluster bench reads.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { ControllerService } from '../../../src/controller/service.ts';
import { KubeBackend } from '../../../src/kube/backend.ts';
import { ObjectChanges } from '../../../src/kube/changes.ts';
import { FINALIZER, NODE_LABEL, PLURAL, type ThinVolume } from '../../../src/kube/types.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { TOPOLOGY_KEY } from '../../../src/version.ts';
import { deleteVolumeReq } from '../../support/requests.ts';
import { createReq, deadline, until, world, type World } from './harness.ts';

const VOLS = 'thinvolumes.dmthin.csi.io';

/** The writes (verb and path) the double logged since `from`, for one volume's object. */
function writesOf(w: World, id: string, from: number): string[] {
  return w.d.requests.slice(from).filter((r) => r.path.includes(`/thinvolumes/${id}`) && !['get', 'list', 'watch'].includes(r.verb))
    .map((r) => `${r.verb} ${r.path.endsWith('/status') ? 'status' : 'object'}`);
}

/** The newest version among a node's ThinVolumes. */
function newestOfIn(w: World, node: string): number {
  return Math.max(...w.d.objects(VOLS).map((o) => o as unknown as ThinVolume).filter((o) => o.spec.nodeName === node).map((o) => Number(o.metadata.resourceVersion)));
}

function assertNotOlder(r: { path: string; query: Record<string, string> }, newest: number): void {
  assert.equal(r.query.resourceVersionMatch, 'NotOlderThan', `${r.path}?${new URLSearchParams(r.query)}`);
  assert.ok(Number(r.query.resourceVersion) >= newest, `not older than the newest object (${newest}): ${r.query.resourceVersion}`);
}

describe('kube mode: the API cost of a volume', () => {
  let w: World;
  const newestOf = (node: string) => newestOfIn(w, node);
  const notOlder = assertNotOlder;
  /** The reconcile's lists of n1's ThinVolumes since `from` (the informer's ask for resourceVersion 0). */
  const startLists = (from: number) => w.d.requests.slice(from)
    .filter((r) => r.verb === 'list' && r.query.labelSelector === `${NODE_LABEL}=n1` && r.path.endsWith('/thinvolumes') && r.query.resourceVersion !== '0');
  before(async () => {
    w = await world();
    for (const node of ['n1', 'n2']) await w.startNode(node);
  });
  after(() => w.close());

  it('a create is the CR (born with the finalizer) and the agent\'s two status writes, and no Event', async () => {
    const from = w.d.requests.length;
    const id = (await w.controller.CreateVolume(deadline(), createReq('cost-1', { node: 'n1' }))).volume!.volume_id!;
    assert.deepEqual((w.d.object(VOLS, id) as unknown as ThinVolume).metadata.finalizers, [FINALIZER]);
    assert.deepEqual(writesOf(w, id, from), ['update status', 'update status']);
    assert.equal(w.d.requests.slice(from).filter((r) => r.verb === 'create' && r.path.endsWith('/thinvolumes')).length, 1);
    assert.equal(w.d.requests.slice(from).filter((r) => r.path.includes('/events')).length, 0, 'no Event for a routine create');
  });

  it('a delete is the DELETE, the Removing status and the finalizer\'s removal: no Pending write before the object ends', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('cost-2', { node: 'n1' }))).volume!.volume_id!;
    const from = w.d.requests.length;
    await w.controller.DeleteVolume(deadline(), deleteVolumeReq(id));
    assert.equal(w.d.object(VOLS, id), undefined);
    assert.deepEqual(writesOf(w, id, from), ['delete object', 'update status', 'update object']);
    assert.equal(w.d.requests.slice(from).filter((r) => r.path.includes('/events')).length, 0, 'no Event for a routine delete');
  });

  it('with another finalizer left, the device record goes back to Pending before ours is dropped', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('cost-3', { node: 'n1' }))).volume!.volume_id!;
    w.d.mutate(VOLS, id, (o) => { o.metadata!.finalizers = [...(o.metadata!.finalizers ?? []), 'example.com/keep']; });
    await assert.rejects(w.controller.DeleteVolume(deadline(1500), deleteVolumeReq(id)));
    const cr = () => w.d.object(VOLS, id) as unknown as ThinVolume;
    await until(() => !cr().metadata.finalizers?.includes(FINALIZER), 'our finalizer dropped', 10_000);
    assert.equal(cr().status?.state, 'Pending', 'the outliving object no longer claims its thin id');
    assert.deepEqual(cr().metadata.finalizers, ['example.com/keep']);
    w.d.mutate(VOLS, id, (o) => { o.metadata!.finalizers = []; });
  });

  it('a CR no agent claimed is deleted without one: the controller drops the finalizer', async () => {
    await w.stopNode('n2'); // its ThinPool status stays fresh, so n2 is still chosen
    const res = w.controller.CreateVolume(deadline(300), createReq('cost-4', { node: 'n2' }));
    await assert.rejects(res);
    const id = w.d.objects(VOLS).map((o) => o as unknown as ThinVolume).find((o) => o.spec.csiName === 'cost-4')!.metadata.name;
    await w.controller.DeleteVolume(deadline(2000), deleteVolumeReq(id));
    assert.equal(w.d.object(VOLS, id), undefined);
    await w.startNode('n2');
  });

  it('an agent\'s reconcile lists a resource from the watch cache, never older than its own last write to it; a cache that cannot answer gets a quorum list', async () => {
    const id = (await w.controller.CreateVolume(deadline(), createReq('cost-6', { node: 'n1' }))).volume!.volume_id!;
    const written = Number((w.d.object(VOLS, id) as unknown as ThinVolume).metadata.resourceVersion);
    const from = w.d.requests.length;
    // The informer's own (re)lists ask for resourceVersion 0; the reconcile's are the others.
    const reconcileLists = (since: number) => w.d.requests.slice(since).filter((r) => r.verb === 'list' && r.query.labelSelector?.startsWith(`${NODE_LABEL}=`) && r.query.resourceVersion !== '0');
    await until(() => reconcileLists(from).some((r) => r.query.labelSelector === `${NODE_LABEL}=n1` && r.path.endsWith('/thinvolumes')), 'a periodic reconcile of n1', 5000);
    // Of the resource it wrote: a resource it never wrote is listed by quorum (its watch cache
    // need not have seen the version of another resource's write).
    const n1 = reconcileLists(from).filter((r) => r.query.labelSelector === `${NODE_LABEL}=n1` && r.path.endsWith('/thinvolumes'));
    assert.ok(n1.length > 0);
    for (const r of n1) {
      assert.equal(r.query.resourceVersionMatch, 'NotOlderThan', `${r.path}?${new URLSearchParams(r.query)}`);
      assert.ok(Number(r.query.resourceVersion) >= written, `listed not older than ${r.query.resourceVersion}, written at ${written}`);
    }
    const from2 = w.d.requests.length;
    w.d.failNext({ verb: 'list', path: /\/thinvolumes$/, status: 504, reason: 'Timeout', message: 'Too large resource version' });
    await until(() => reconcileLists(from2).some((r) => r.status === 504), 'a cached list refused', 5000);
    await until(() => reconcileLists(from2).some((r) => r.query.resourceVersion === undefined && r.status === 200), 'the quorum list after it', 5000);
  });

  it('a cleanly stopped agent keeps its list bounds: its restart lists from the watch cache at once, not older than its last writes', async () => {
    await w.controller.CreateVolume(deadline(), createReq('cost-7', { node: 'n1' }));
    await w.stopNode('n1');
    const newest = newestOf('n1');
    const from = w.d.requests.length;
    await w.startNode('n1');
    const lists = startLists(from);
    assert.ok(lists.length >= 2, `the start's lists of its ThinVolumes: ${lists.length}`);
    for (const r of lists) notOlder(r, newest);
  });

  it('after a crash (no bounds kept) its first list of a resource is a quorum read, the next ones cached, not older than what it listed', async () => {
    await w.stopNode('n1');
    rmSync(join(w.stateDir, 'n1', 'list-bounds.json')); // as if it had been killed
    const newest = newestOf('n1');
    const from = w.d.requests.length;
    await w.startNode('n1');
    const lists = startLists(from);
    assert.ok(lists.length >= 2, `the start's lists of its ThinVolumes: ${lists.length}`);
    assert.equal(lists[0]!.query.resourceVersion, undefined, 'the first by quorum: nothing bounds it');
    for (const r of lists.slice(1)) notOlder(r, newest);
  });

  it('counts watch events per agent: its own objects only, none of another node\'s', () => {
    const n1 = w.nodes.get('n1')!.agent.watchEvents;
    assert.ok(n1.own > 0);
    assert.equal(n1.foreign, 0);
    assert.equal(w.nodes.get('n2')!.agent.watchEvents.foreign, 0);
  });

  it('the controller wakes on the watch event, not on a poll', async () => {
    const kc = w.d.kubeConfig();
    const api = kc.makeApiClient(CustomObjectsApi);
    const changes = new ObjectChanges(kc, api, [PLURAL.volume, PLURAL.snapshot], silentLogger());
    await changes.start();
    try {
      // A poll a minute apart: only the watch can answer within the 3 s deadline.
      const backend = new KubeBackend(api, { topologyKey: TOPOLOGY_KEY, pollBaseMs: 60_000, pollMaxMs: 60_000, changes });
      const ctl = new ControllerService(backend, { fsType: 'ext4' });
      const from = w.d.requests.length;
      const id = (await ctl.CreateVolume(deadline(3000), createReq('cost-5', { node: 'n1' }))).volume!.volume_id!;
      const reads = w.d.requests.slice(from).filter((r) => r.verb === 'get' && r.path.endsWith(`/thinvolumes/${id}`)).length;
      assert.ok(reads <= 6, `reads of the object: ${reads}`); // the controller's 3 and the agent's 3, no polls
      await ctl.DeleteVolume(deadline(3000), deleteVolumeReq(id));
      await until(() => w.d.object(VOLS, id) === undefined, 'gone');
    } finally {
      changes.stop();
    }
  });
});
