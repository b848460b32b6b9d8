// Failure handling of Kubernetes mode against the API server TEST DOUBLE: 409 conflicts,
// watch drops and 410 relists, agent restarts, crashes mid-operation, Faulty devices, failures.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { DmError } from '../../../src/devmapper/types.ts';
import { FORCE_CLEANUP_ANNOTATION, REMOVE_ORPHANS_ANNOTATION, RETRY_ANNOTATION, type ThinVolume } from '../../../src/kube/types.ts';
import { deleteVolumeReq, getVolumeReq } from '../../support/requests.ts';
import { createReq, deadline, POOL, until, world, type World } from './harness.ts';
import { sleep } from '../../../src/system/delay.ts';

const TV = 'thinvolumes.dmthin.csi.io';
const SLOW = { resyncMs: 600_000 }; // only watch events drive the agent

describe('kube mode: failures and recovery', () => {
  let w: World;
  beforeEach(async () => { w = await world(); });
  afterEach(async () => { await w.close(); });

  const cr = (id: string) => w.d.object(TV, id) as unknown as ThinVolume | undefined;

  it('re-reads and re-applies a status write after 409 Conflict', async () => {
    const kn = await w.startNode('n1', SLOW);
    const id = (await w.controller.CreateVolume(deadline(), createReq('c1', { node: 'n1' }))).volume!.volume_id!;
    // Only this object's status: a background write of another object (the pool's stamp) must not take a 409 meant for it.
    w.d.failNext({ verb: 'update', path: new RegExp(`/${id}/status$`), status: 409, times: 2 });
    let runs = 0;
    const rec = await kn.store.updateDevice(id, (r) => { runs++; r.state = 'Deactivated'; });
    assert.equal(rec.state, 'Deactivated');
    assert.equal(runs, 3);
    assert.equal(cr(id)?.status?.state, 'Deactivated');
    // Another actor's status field survives our write: we merge on the re-read object.
    w.d.mutate(TV, id, (o) => { (o.status as Record<string, unknown>).conditions = [{ type: 'X', status: 'True', reason: 'r', message: 'm', lastTransitionTime: new Date().toISOString() }]; });
    await kn.store.updateDevice(id, (r) => { r.state = 'Created'; });
    assert.equal(cr(id)?.status?.conditions?.[0]?.type, 'X');
  });

  it('keeps working after abrupt watch drops and a 410 Gone relist', async () => {
    await w.startNode('n1', SLOW);
    await w.controller.CreateVolume(deadline(), createReq('w1', { node: 'n1' }));
    w.d.dropWatches({ abrupt: true });
    w.d.compact();
    await w.controller.CreateVolume(deadline(), createReq('w2', { node: 'n1' }));
    w.d.dropWatches();
    w.d.compact();
    const res = await w.controller.CreateVolume(deadline(), createReq('w3', { node: 'n1' }));
    assert.equal(cr(res.volume!.volume_id!)?.status?.state, 'Created');
    await until(() => w.d.watchCount() >= 2, 'both watches back');
    // The resume after compact() got 410 Gone: the informers listed again.
    const lists = w.d.requests.filter((r) => r.verb === 'list' && /thinvolumes/.test(r.path));
    assert.ok(lists.length >= 3, `lists: ${lists.length}`);
  });

  it('a request made while the agent is down completes when it restarts on the same kernel', async () => {
    await w.startNode('n1');
    const first = (await w.controller.CreateVolume(deadline(), createReq('r1', { node: 'n1' }))).volume!.volume_id!;
    await w.stopNode('n1');
    const pending = w.controller.CreateVolume(deadline(8000), createReq('r2', { node: 'n1' }));
    await sleep(200);
    const kn = await w.startNode('n1');
    const second = (await pending).volume!.volume_id!;
    const a = (await kn.store.getDevice(first))!;
    const b = (await kn.store.getDevice(second))!;
    assert.notEqual(a.deviceId, b.deviceId);
    assert.equal(kn.agent.lastReport?.orphans.length, 0);
  });

  it('a crash mid-create (state Creating) is rolled back and redone on restart', async () => {
    await w.startNode('n1');
    const id = (await w.controller.CreateVolume(deadline(), createReq('m1', { node: 'n1' }))).volume!.volume_id!;
    await w.stopNode('n1');
    w.d.mutate(TV, id, (o) => { Object.assign(o.status as object, { state: 'Creating' }); });
    const kn = await w.startNode('n1');
    await until(() => cr(id)?.status?.state === 'Created', 'recreated');
    assert.ok(kn.events.recent.some((e) => e.reason === 'Repaired' && e.name === id && /rolled back/.test(e.message)));
    assert.equal(kn.agent.lastReport?.orphans.length, 0);
  });

  it('a Faulty device is retried on request (annotation) and the annotation is removed', async () => {
    const kn = await w.startNode('n1', SLOW);
    const id = (await w.controller.CreateVolume(deadline(), createReq('f1', { node: 'n1' }))).volume!.volume_id!;
    w.d.mutate(TV, id, (o) => { Object.assign(o.status as object, { state: 'Faulty', faultyFrom: 'Deactivating', message: 'Deactivating: boom', code: 'INTERNAL' }); });
    const faulty = await w.controller.ControllerGetVolume(deadline(), getVolumeReq(id));
    assert.equal(faulty.status?.volume_condition?.abnormal, true);
    w.d.mutate(TV, id, (o) => { o.metadata = { ...o.metadata, annotations: { [RETRY_ANNOTATION]: 'now' } }; });
    await until(() => cr(id)?.status?.state === 'Deactivated' && cr(id)?.metadata.annotations?.[RETRY_ANNOTATION] === undefined, 'repaired and annotation removed');
    assert.ok(kn.events.recent.some((e) => e.reason === 'RetryRequested'));
    assert.equal(cr(id)?.status?.code, undefined);
  });

  it('returns the agent\'s failure code, and a retry after the cause is gone succeeds', async () => {
    const kn = await w.startNode('n1');
    w.dms.get('n1')!.inject({ op: 'message', match: /create_thin/, error: new DmError('no_space', 'no space left'), times: 100 });
    await assert.rejects(w.controller.CreateVolume(deadline(1500), createReq('e1', { node: 'n1' })),
      (e: { code: number }) => e.code !== Code.OK && e.code !== Code.DEADLINE_EXCEEDED);
    const id = w.d.objects(TV).find((o) => (o.spec as { csiName: string }).csiName === 'e1')?.metadata?.name as string;
    assert.equal(cr(id)?.status?.state, 'Pending');
    assert.ok(cr(id)?.status?.code);
    assert.ok(kn.events.recent.some((e) => e.type === 'Warning' && e.reason === 'CreateFailed'));
    w.dms.get('n1')!.clearFaults();
    const res = await w.controller.CreateVolume(deadline(), createReq('e1', { node: 'n1' }));
    assert.equal(cr(res.volume!.volume_id!)?.status?.state, 'Created');
  });

  it('a volume deleted while its agent is down is cleaned up when the agent returns', async () => {
    await w.startNode('n1');
    const id = (await w.controller.CreateVolume(deadline(), createReq('d1', { node: 'n1' }))).volume!.volume_id!;
    await w.stopNode('n1');
    await assert.rejects(w.controller.DeleteVolume(deadline(300), deleteVolumeReq(id)), (e: { code: number }) => e.code === Code.DEADLINE_EXCEEDED);
    assert.ok(cr(id)?.metadata.deletionTimestamp);
    await w.startNode('n1');
    await w.controller.DeleteVolume(deadline(), deleteVolumeReq(id));
    assert.equal(cr(id), undefined);
  });

  it('a device that cannot be deleted is retried at the queue\'s backoff, not at the echo of its own failure record', async () => {
    const kn = await w.startNode('n1', { retryBaseMs: 200, retryMaxMs: 400 });
    const id = (await w.controller.CreateVolume(deadline(), createReq('u0', { node: 'n1' }))).volume!.volume_id!;
    const path = await kn.devices.activate(deadline(), id);
    w.dms.get('n1')!.adjustOpen(path, 1);
    await assert.rejects(w.controller.DeleteVolume(deadline(300), deleteVolumeReq(id)));
    const from = w.d.requests.length;
    await sleep(2000);
    // 2 s of backoff at 200, 400, 400 ... ms is at most 6 attempts, each one status write; each
    // write's own watch event taken for new work made it hundreds.
    const writes = w.d.requests.slice(from).filter((r) => r.verb === 'update' && r.path.endsWith(`/thinvolumes/${id}/status`));
    assert.ok(writes.length >= 1 && writes.length <= 8, `status writes in 2 s: ${writes.length}`);
    assert.equal(cr(id)?.status?.code, 'FAILED_PRECONDITION');
    w.dms.get('n1')!.adjustOpen(path, -1);
    await until(() => cr(id) === undefined, 'deleted once released', 10_000);
  });

  it('deleting a volume in use returns the agent\'s FAILED_PRECONDITION; it goes once released', async () => {
    const kn = await w.startNode('n1');
    const id = (await w.controller.CreateVolume(deadline(), createReq('u1', { node: 'n1' }))).volume!.volume_id!;
    const path = await kn.devices.activate(deadline(), id);
    w.dms.get('n1')!.adjustOpen(path, 1);
    await assert.rejects(w.controller.DeleteVolume(deadline(15_000), deleteVolumeReq(id)),
      (e: { code: number; message: string }) => e.code === Code.FAILED_PRECONDITION && /in use/.test(e.message));
    assert.ok(kn.events.recent.some((e) => e.reason === 'DeleteFailed' && e.name === id));
    w.dms.get('n1')!.adjustOpen(path, -1);
    // Like the CO: retry. An agent attempt that began before the release may still answer the first retry.
    for (let i = 0; ; i++) {
      try {
        await w.controller.DeleteVolume(deadline(), deleteVolumeReq(id));
        break;
      } catch (e) {
        // A loaded machine may also run out the deadline while the agent backs off: retry that too.
        const code = (e as { code: number }).code;
        if (i >= 10 || (code !== Code.FAILED_PRECONDITION && code !== Code.DEADLINE_EXCEEDED)) throw e;
      }
    }
    assert.equal(cr(id), undefined);
  });

  it('a node whose ThinPool status went stale gets no new volumes (RESOURCE_EXHAUSTED)', async () => {
    await w.startNode('n1');
    await w.stopNode('n1');
    w.d.mutate('thinpools.dmthin.csi.io', 'n1', (o) => { (o.status as Record<string, unknown>).lastReconcileTime = '2020-01-01T00:00:00.000Z'; });
    await assert.rejects(w.controller.CreateVolume(deadline(), createReq('st1', { node: 'n1' })),
      (e: { code: number; message: string }) => e.code === Code.RESOURCE_EXHAUSTED && /last refreshed/.test(e.message));
  });

  it('force-cleanup annotation drops the finalizer of a device that cannot be deleted', async () => {
    const kn = await w.startNode('n1');
    const id = (await w.controller.CreateVolume(deadline(), createReq('fc1', { node: 'n1' }))).volume!.volume_id!;
    const path = await kn.devices.activate(deadline(), id);
    w.dms.get('n1')!.adjustOpen(path, 1); // held open for good
    await assert.rejects(w.controller.DeleteVolume(deadline(1000), deleteVolumeReq(id)));
    w.d.mutate(TV, id, (o) => { o.metadata = { ...o.metadata, annotations: { [FORCE_CLEANUP_ANNOTATION]: 'yes' } }; });
    await until(() => cr(id) === undefined, 'CR gone');
    await until(() => kn.events.recent.some((e) => e.reason === 'ForcedCleanup' && e.name === id), 'ForcedCleanup event');
  });

  it('finds a device deleted behind its back in the pass right after the start, not a resync later', async () => {
    let kn = await w.startNode('n1', SLOW);
    const id = (await w.controller.CreateVolume(deadline(), createReq('gone', { node: 'n1' }))).volume!.volume_id!;
    const deviceId = (await kn.store.getDevice(id))!.deviceId;
    await w.stopNode('n1');
    await w.dms.get('n1')!.message(deadline(), POOL, `delete ${deviceId}`);
    kn = await w.startNode('n1', SLOW);
    await until(() => cr(id)?.status?.state === 'Faulty' && kn.agent.lastReport?.metadata === 'checked', 'Faulty without waiting for a resync');
    assert.match(cr(id)?.status?.message ?? '', new RegExp(`thin device ${deviceId} is not in the metadata`));
  });

  it('reports a device no CR owns, and deletes it only after the operator opts in on the ThinPool', async () => {
    const kn = await w.startNode('n1');
    const dm = w.dms.get('n1')!;
    const pool = kn.devices.pool;
    await dm.message(deadline(), POOL, 'create_thin 4242');
    await dm.create(deadline(), 'stray', `0 2048 thin ${pool.devNo} 4242`);
    await until(() => kn.events.recent.some((e) => e.reason === 'OrphanDevice' && /4242/.test(e.message)), 'orphan reported');
    assert.ok(dm.ops.every((o) => !(o.op === 'message' && o.args.join(' ').includes('delete 4242'))));
    w.d.mutate('thinpools.dmthin.csi.io', 'n1', (o) => { o.metadata = { ...o.metadata, annotations: { [REMOVE_ORPHANS_ANNOTATION]: 'true' } }; });
    await until(() => kn.events.recent.some((e) => e.reason === 'OrphanRemoved'), 'orphan removed');
    assert.equal(await dm.info(deadline(), 'stray'), undefined);
    await until(() => (w.d.object('thinpools.dmthin.csi.io', 'n1') as { status?: { orphans?: number } }).status?.orphans === 0, 'status says 0 orphans');
  });
});
