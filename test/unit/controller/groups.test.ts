import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { GroupControllerService } from '../../../src/controller/groups.ts';
import { LocalBackend, LocalGroupBackend } from '../../../src/controller/local-backend.ts';
import { groupIdFor } from '../../../src/volume/ids.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import { Code } from '../../../src/errors.ts';
import { GroupSnapshots } from '../../../src/pool/group.ts';
import type { DeviceRecord } from '../../../src/state/types.ts';
import { TOPOLOGY_KEY } from '../../../src/version.ts';
import { codeOf } from '../../support/csi-client.ts';
import { createVolumeReq, deleteGroupReq, deleteSnapshotReq, getGroupReq, getSnapshotReq, groupSnapshotReq, listSnapshotsReq, type Fields } from '../../support/requests.ts';
import { ctx, fakeDriver, MiB, mountCap, type FakeDriver } from '../support/fake-driver.ts';
const NO_VOL = 'vol-00000000000000000000000000000000';

describe('GroupController', () => {
  let fd: FakeDriver;
  let g: GroupControllerService;
  const vols: string[] = [];
  const createVol = async (name: string) => (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 } }))).volume!.volume_id!;
  const create = (name: string, sources: string[], o: Fields<'CreateVolumeGroupSnapshot'> = {}) => g.CreateVolumeGroupSnapshot(ctx, groupSnapshotReq(name, sources, o));
  const get = (id: string, snapshotIds: string[]) => g.GetVolumeGroupSnapshot(ctx, getGroupReq(id, snapshotIds));
  const del = (id: string, snapshotIds: string[]) => g.DeleteVolumeGroupSnapshot(ctx, deleteGroupReq(id, snapshotIds));
  const idsOf = (r: Awaited<ReturnType<typeof create>>) => r.group_snapshot.snapshots!.map((s) => s.snapshot_id!);

  beforeEach(async () => {
    fd = await fakeDriver();
    g = fd.driver.groupController!;
    vols.length = 0;
    for (const n of ['a', 'b', 'c']) vols.push(await createVol(n));
  });
  afterEach(() => fd.cleanup());

  it('is advertised: Identity GROUP_CONTROLLER_SERVICE, capability CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT', () => {
    assert.ok(fd.driver.identity.GetPluginCapabilities().capabilities.some((c) => JSON.stringify(c).includes('GROUP_CONTROLLER_SERVICE')));
    assert.deepEqual(g.GroupControllerGetCapabilities(), { capabilities: [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }] });
  });

  it('CreateVolumeGroupSnapshot is idempotent by name with the same sources (any order); secrets are ignored', async () => {
    const a = await create('g', vols.slice(0, 2), { secrets: { password: 'x' } });
    const b = await create('g', [vols[1]!, vols[0]!]);
    assert.deepEqual(b, a);
    assert.equal(a.group_snapshot.ready_to_use, true);
    assert.equal(a.group_snapshot.group_snapshot_id, groupIdFor('g'));
    for (const s of a.group_snapshot.snapshots!) {
      assert.equal(s.group_snapshot_id, groupIdFor('g'));
      assert.equal(s.ready_to_use, true);
      assert.equal(s.size_bytes, 64 * MiB);
    }
    assert.equal((await fd.store.listDevices()).filter((r) => r.kind === 'snapshot').length, 2);
  });

  it('the same name with other sources is ALREADY_EXISTS; an unknown source NOT_FOUND and leaves nothing; bad arguments INVALID_ARGUMENT', async () => {
    await create('g', vols.slice(0, 2));
    assert.equal(await codeOf(create('g', vols)), 'ALREADY_EXISTS');
    assert.equal(await codeOf(create('g', [vols[0]!])), 'ALREADY_EXISTS');
    assert.equal(await codeOf(create('h', [vols[0]!, NO_VOL])), 'NOT_FOUND');
    assert.equal(await codeOf(create('h', [vols[0]!, 'garbage'])), 'NOT_FOUND');
    assert.deepEqual(await fd.store.getGroup(groupIdFor('h')), undefined);
    assert.equal(await codeOf(create('', vols)), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(create('h', [])), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(create('h', [vols[0]!, vols[0]!])), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(create('h', vols, { parameters: { speed: 'fast' } })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(create('h', vols, { parameters: { 'csi.storage.k8s.io/volumegroupsnapshot/name': 'x' } })), 'OK');
  });

  it('a Faulty source is FAILED_PRECONDITION; a read-only pool too (it must be repaired first), leaving no record', async () => {
    await fd.driver.devices.markFaulty(vols[2]!, 'Resuming', 'test');
    assert.equal(await codeOf(create('g', vols)), 'FAILED_PRECONDITION');
    fd.dm.setPoolMode('test-pool', 'ro');
    assert.equal(await codeOf(create('g', vols.slice(0, 2))), 'FAILED_PRECONDITION');
    assert.deepEqual(await fd.store.listGroups(), []);
    assert.equal((await fd.store.listDevices()).filter((r) => r.kind === 'snapshot').length, 0);
  });

  it('sources on different nodes are INVALID_ARGUMENT, saying why', async () => {
    class TwoNodes extends LocalBackend {
      override topologyOf(rec: DeviceRecord) { return { [TOPOLOGY_KEY]: rec.id === vols[1] ? 'node-2' : 'node-1' }; }
    }
    const spread = new GroupControllerService(new TwoNodes(fd.driver.devices, 'node-1', TOPOLOGY_KEY), new LocalGroupBackend(new GroupSnapshots(fd.driver.devices, fd.store)));
    await assert.rejects(spread.CreateVolumeGroupSnapshot(ctx, groupSnapshotReq('g', vols.slice(0, 2))),
      (e: { code: number; message: string }) => e.code === Code.INVALID_ARGUMENT && /must all be on one node/.test(e.message) && e.message.includes('node-2'));
    assert.deepEqual(await fd.store.listGroups(), []);
  });

  it('GetVolumeGroupSnapshot: the group, INVALID_ARGUMENT for another snapshot list, NOT_FOUND when unknown', async () => {
    const r = await create('g', vols.slice(0, 2));
    const ids = idsOf(r);
    assert.deepEqual((await get(r.group_snapshot.group_snapshot_id!, [...ids].reverse())).group_snapshot, r.group_snapshot);
    assert.equal(await codeOf(get(r.group_snapshot.group_snapshot_id!, ids.slice(0, 1))), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(get(r.group_snapshot.group_snapshot_id!, [])), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(get(groupIdFor('nope'), ids)), 'NOT_FOUND');
    assert.equal(await codeOf(get('garbage', ids)), 'NOT_FOUND');
    assert.equal(await codeOf(get(groupIdFor('nope'), [])), 'NOT_FOUND', 'an unknown group has no list to check');
    assert.equal(await codeOf(get('', ids)), 'INVALID_ARGUMENT');
  });

  it('DeleteVolumeGroupSnapshot of an unknown id is OK, with or without snapshot_ids; a known one still needs its list', async () => {
    assert.deepEqual(await del(groupIdFor('nope'), []), {});
    assert.deepEqual(await del('garbage', []), {});
    const r = await create('g', vols.slice(0, 2));
    assert.equal(await codeOf(del(r.group_snapshot.group_snapshot_id!, [])), 'INVALID_ARGUMENT');
    assert.equal((await fd.store.listGroups()).length, 1, 'nothing deleted on a refused request');
    assert.equal(await codeOf(del('', idsOf(r))), 'INVALID_ARGUMENT');
  });

  it('GetSnapshot answers for each member with its group id', async () => {
    const r = await create('g', vols.slice(0, 2));
    for (const s of r.group_snapshot.snapshots!) {
      assert.deepEqual((await fd.driver.controller.GetSnapshot(ctx, getSnapshotReq(s.snapshot_id!))).snapshot, s);
    }
  });

  it('members are ordinary snapshots: listed with their group id, restorable, deleted only with the group', async () => {
    const r = await create('g', vols.slice(0, 2));
    const ids = idsOf(r);
    const c = fd.driver.controller;
    const listed = await c.ListSnapshots(ctx, listSnapshotsReq({ source_volume_id: vols[0]! }));
    assert.deepEqual(listed.entries!.map((e) => [e.snapshot!.snapshot_id, e.snapshot!.group_snapshot_id]), [[ids[0], groupIdFor('g')]]);
    const restored = await c.CreateVolume(ctx, createVolumeReq({ name: 'r', volume_capabilities: [mountCap()], volume_content_source: { snapshot: { snapshot_id: ids[1]! } } }));
    assert.equal(restored.volume!.content_source?.snapshot?.snapshot_id, ids[1]);
    assert.equal(await codeOf(c.DeleteSnapshot(ctx, deleteSnapshotReq(ids[0]!))), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(del(r.group_snapshot.group_snapshot_id!, ids.slice(1))), 'INVALID_ARGUMENT');
    await del(r.group_snapshot.group_snapshot_id!, ids);
    await del(r.group_snapshot.group_snapshot_id!, ids); // idempotent
    await del('garbage', ids);
    assert.deepEqual(await fd.store.listGroups(), []);
    assert.deepEqual((await fd.store.listDevices()).filter((x) => x.kind === 'snapshot'), []);
    assert.equal((await fd.store.getDevice(restored.volume!.volume_id!))?.state, 'Created', 'the restore outlives its source snapshot');
  });

  it('a failed create_snap undoes the whole group and resumes every source', async () => {
    for (const v of vols) await fd.driver.devices.activate(ctx, v);
    const second = (await fd.store.getDevice(vols[1]!))!.deviceId;
    fd.dm.inject({ op: 'message', match: new RegExp(`create_snap \\d+ ${second}$`), when: 'after', error: new DmError('unknown', 'lost the reply') });
    assert.equal(await codeOf(create('g', vols)), 'INTERNAL');
    assert.deepEqual(await fd.store.listGroups(), []);
    assert.deepEqual((await fd.store.listDevices()).filter((x) => x.kind === 'snapshot'), []);
    for (const v of vols) assert.equal((await fd.dm.info(ctx, `dmthin-${v}`))?.suspended, false);
    assert.deepEqual(fd.dm.metadataThinIds('test-pool').length, 3, 'the snapshots made (the first two, the second of which lost its reply) were deleted');
    assert.equal((await create('g', vols)).group_snapshot.ready_to_use, true, 'and the retry succeeds');
  });
});
