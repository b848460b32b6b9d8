import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ControllerService } from '../../../src/controller/service.ts';
import { codeOf } from '../../support/csi-client.ts';
import { idFor } from '../../../src/volume/ids.ts';
import { createVolumeReq, deleteSnapshotReq, deleteVolumeReq, getSnapshotReq, listSnapshotsReq, snapshotReq, type Fields } from '../../support/requests.ts';
import { ctx, fakeDriver, MiB, mountCap, POOL, type FakeDriver } from '../support/fake-driver.ts';
const NO_VOL = 'vol-00000000000000000000000000000000';

describe('Controller snapshots', () => {
  let fd: FakeDriver;
  let c: ControllerService;
  let vol: string;
  let vol2: string;
  const createVol = async (name: string) => (await c.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 } }))).volume!.volume_id!;
  const snap = (name: string, source: string, o: Fields<'CreateSnapshot'> = {}) => c.CreateSnapshot(ctx, snapshotReq(name, source, o));
  const delSnap = (id: string) => c.DeleteSnapshot(ctx, deleteSnapshotReq(id));
  const list = (o: Fields<'ListSnapshots'> = {}) => c.ListSnapshots(ctx, listSnapshotsReq(o));
  beforeEach(async () => {
    fd = await fakeDriver();
    c = fd.driver.controller;
    vol = await createVol('v1');
    vol2 = await createVol('v2');
  });
  afterEach(() => fd.cleanup());

  describe('CreateSnapshot', () => {
    it('is idempotent, ready to use, sized like its source', async () => {
      const a = (await snap('s1', vol)).snapshot!;
      const b = (await snap('s1', vol)).snapshot!;
      assert.deepEqual(b, a);
      assert.equal(a.ready_to_use, true);
      assert.equal(a.source_volume_id, vol);
      assert.equal(a.size_bytes, 64 * MiB);
      assert.equal((await fd.store.listDevices()).filter((r) => r.kind === 'snapshot').length, 1);
    });
    it('the same name for another source is ALREADY_EXISTS; a missing source NOT_FOUND; bad args INVALID_ARGUMENT', async () => {
      await snap('s1', vol);
      assert.equal(await codeOf(snap('s1', vol2)), 'ALREADY_EXISTS');
      assert.equal(await codeOf(snap('s2', NO_VOL)), 'NOT_FOUND');
      assert.equal(await codeOf(snap('s2', 'garbage')), 'NOT_FOUND');
      assert.equal(await codeOf(snap('', vol)), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(snap('s2', '')), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(snap('s2', vol, { parameters: { speed: 'fast' } })), 'INVALID_ARGUMENT');
    });
    it('of a Faulty source is FAILED_PRECONDITION', async () => {
      await fd.driver.devices.markFaulty(vol, 'Resuming', 'test');
      assert.equal(await codeOf(snap('s1', vol)), 'FAILED_PRECONDITION');
    });
    it('on a read-only pool is FAILED_PRECONDITION (it must be repaired; freeing space cannot help) and leaves no record', async () => {
      const before = await fd.store.listDevices();
      fd.dm.setPoolMode(POOL, 'ro');
      assert.equal(await codeOf(snap('s1', vol)), 'FAILED_PRECONDITION');
      assert.deepEqual(await fd.store.listDevices(), before);
    });
  });

  describe('GetSnapshot', () => {
    const get = (id: string) => c.GetSnapshot(ctx, getSnapshotReq(id));
    it('is advertised (GET_SNAPSHOT) and answers what CreateSnapshot answered', async () => {
      assert.ok(c.ControllerGetCapabilities().capabilities!.some((x) => x.rpc?.type === 'GET_SNAPSHOT'));
      const s = (await snap('s1', vol)).snapshot!;
      assert.deepEqual((await get(s.snapshot_id!)).snapshot, s);
    });
    it('NOT_FOUND for a deleted, unknown or foreign id, and for a volume id; INVALID_ARGUMENT without an id', async () => {
      const s = (await snap('s1', vol)).snapshot!;
      await delSnap(s.snapshot_id!);
      assert.equal(await codeOf(get(s.snapshot_id!)), 'NOT_FOUND');
      assert.equal(await codeOf(get(idFor('snap', 'never'))), 'NOT_FOUND');
      assert.equal(await codeOf(get('garbage')), 'NOT_FOUND');
      assert.equal(await codeOf(get(vol)), 'NOT_FOUND', 'a volume is not a snapshot');
      assert.equal(await codeOf(get('')), 'INVALID_ARGUMENT');
    });
    it('a snapshot still being cut is retrievable, not ready to use', async () => {
      const s = (await snap('s1', vol)).snapshot!;
      await fd.store.updateDevice(s.snapshot_id!, (r) => ({ ...r, state: 'Creating' }));
      assert.equal((await get(s.snapshot_id!)).snapshot.ready_to_use, false);
    });
  });

  describe('DeleteSnapshot', () => {
    it('deletes, and unknown or repeated ids are OK', async () => {
      const s = (await snap('s1', vol)).snapshot!;
      await delSnap(s.snapshot_id!);
      await delSnap(s.snapshot_id!);
      assert.equal(await fd.store.getDevice(s.snapshot_id!), undefined);
      assert.equal(await codeOf(delSnap('snap-00000000000000000000000000000000')), 'OK');
      assert.equal(await codeOf(delSnap('')), 'INVALID_ARGUMENT');
      // A volume id is not a snapshot: nothing is deleted.
      await delSnap(vol);
      assert.ok(await fd.store.getDevice(vol));
    });
    it('the source volume can be deleted while its snapshot lives on, and restored from', async () => {
      const s = (await snap('s1', vol)).snapshot!;
      await c.DeleteVolume(ctx, deleteVolumeReq(vol));
      const r = await c.CreateVolume(ctx, createVolumeReq({ name: 'r', volume_capabilities: [mountCap()], volume_content_source: { snapshot: { snapshot_id: s.snapshot_id! } } }));
      // No capacity_range: the default size, never less than the snapshot.
      assert.ok(Number(r.volume!.capacity_bytes) >= 64 * MiB);
      assert.deepEqual(r.volume!.content_source, { snapshot: { snapshot_id: s.snapshot_id! } });
    });
  });

  describe('ListSnapshots', () => {
    it('filters by id and source, pages with tokens, refuses bad tokens', async () => {
      const ids: string[] = [];
      for (const n of ['a', 'b', 'c']) ids.push((await snap(n, vol)).snapshot!.snapshot_id!);
      ids.push((await snap('d', vol2)).snapshot!.snapshot_id!);
      assert.equal((await list()).entries!.length, 4);
      assert.equal((await list({ source_volume_id: vol })).entries!.length, 3);
      assert.deepEqual((await list({ snapshot_id: ids[3] })).entries!.map((e) => e.snapshot!.snapshot_id!), [ids[3]]);
      assert.deepEqual((await list({ snapshot_id: 'snap-00000000000000000000000000000000' })).entries!, []);
      const seen: string[] = [];
      let token = '';
      do {
        const page = await list({ max_entries: 3, starting_token: token });
        seen.push(...page.entries!.map((e) => e.snapshot!.snapshot_id!));
        token = page.next_token ?? '';
      } while (token);
      assert.deepEqual([...seen].sort(), [...ids].sort());
      assert.equal(await codeOf(list({ starting_token: 'bogus' })), 'ABORTED');
      assert.equal(await codeOf(list({ max_entries: -1 })), 'INVALID_ARGUMENT');
    });
  });
});
