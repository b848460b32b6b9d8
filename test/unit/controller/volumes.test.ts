import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ControllerService } from '../../../src/controller/service.ts';
import type { VolumeCapability__Output } from '../../../src/csi/generated/csi/v1/VolumeCapability.ts';
import { codeOf } from '../../support/csi-client.ts';
import { capacityReq, createVolumeReq, deleteVolumeReq, expandReq, getVolumeReq, listVolumesReq, snapshotReq, validateReq, type Fields } from '../../support/requests.ts';
import { blockCap, ctx, fakeDriver, GiB, MiB, mountCap, POOL, type FakeDriver } from '../support/fake-driver.ts';

describe('Controller volumes', () => {
  let fd: FakeDriver;
  let c: ControllerService;
  beforeEach(async () => { fd = await fakeDriver(); c = fd.driver.controller; });
  afterEach(() => fd.cleanup());

  const create = (o: Fields<'CreateVolume'> = {}) => c.CreateVolume(ctx, createVolumeReq({ name: 'pvc-1', volume_capabilities: [mountCap()], ...o }));
  const del = (id: string) => c.DeleteVolume(ctx, deleteVolumeReq(id));
  const snap = (name: string, source: string) => c.CreateSnapshot(ctx, snapshotReq(name, source));
  const range = (required: number, limit = 0) => ({ capacity_range: { required_bytes: required, limit_bytes: limit } });

  describe('CreateVolume', () => {
    it('missing name or capabilities is INVALID_ARGUMENT', async () => {
      assert.equal(await codeOf(create({ name: '' })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ volume_capabilities: [] })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ name: 'bad/name' })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ name: 'x'.repeat(129) })), 'INVALID_ARGUMENT');
    });
    it('multi-node modes, unknown fs and unknown parameters are INVALID_ARGUMENT', async () => {
      assert.equal(await codeOf(create({ volume_capabilities: [mountCap('ext4', 'MULTI_NODE_MULTI_WRITER')] })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ volume_capabilities: [mountCap('ext4', 'MULTI_NODE_READER_ONLY')] })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ volume_capabilities: [mountCap('btrfs')] })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ parameters: { fsType: 'zfs' } })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ parameters: { color: 'blue' } })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ volume_capabilities: [mountCap(), blockCap()] })), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create({ parameters: { 'csi.storage.k8s.io/pvc/name': 'x' } })), 'OK');
    });
    it('limit below required is INVALID_ARGUMENT; an absurd size is OUT_OF_RANGE', async () => {
      assert.equal(await codeOf(create(range(2 * GiB, GiB))), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(create(range(1024 ** 5))), 'OUT_OF_RANGE');
      assert.deepEqual(await fd.store.listDevices(), []);
    });
    it('a size the pool cannot hold is RESOURCE_EXHAUSTED', async () => {
      assert.equal(await codeOf(create(range(100 * GiB))), 'RESOURCE_EXHAUSTED');
      assert.deepEqual(await fd.store.listDevices(), []);
    });
    it('defaults to 1 GiB, rounds up to MiB, honours a tight limit', async () => {
      assert.equal((await create()).volume!.capacity_bytes, GiB);
      assert.equal((await create({ name: 'b', ...range(MiB + 1) })).volume!.capacity_bytes, 2 * MiB);
      assert.equal((await create({ name: 'c', ...range(0, 10 * MiB) })).volume!.capacity_bytes, 10 * MiB);
    });
    it('the same name twice is the same volume; a different size or access type is ALREADY_EXISTS', async () => {
      const a = (await create(range(GiB))).volume!;
      const b = (await create(range(GiB))).volume!;
      assert.deepEqual(b, a);
      assert.equal((await fd.store.listDevices()).length, 1);
      assert.equal(await codeOf(create(range(2 * GiB))), 'ALREADY_EXISTS');
      assert.equal(await codeOf(create({ volume_capabilities: [blockCap()] })), 'ALREADY_EXISTS');
      assert.equal(await codeOf(create({ volume_capabilities: [mountCap('xfs')] })), 'ALREADY_EXISTS');
    });
    it('a missing source snapshot or volume is NOT_FOUND', async () => {
      assert.equal(await codeOf(create({ volume_content_source: { snapshot: { snapshot_id: 'snap-00000000000000000000000000000000' } } })), 'NOT_FOUND');
      assert.equal(await codeOf(create({ volume_content_source: { volume: { volume_id: 'vol-00000000000000000000000000000000' } } })), 'NOT_FOUND');
      assert.equal(await codeOf(create({ volume_content_source: { volume: { volume_id: 'garbage' } } })), 'NOT_FOUND');
    });
    it('from a snapshot: same or larger size, a smaller limit is OUT_OF_RANGE, a different source is ALREADY_EXISTS', async () => {
      const v = (await create({ name: 'src', ...range(2 * GiB) })).volume!;
      const s = (await snap('s1', v.volume_id!)).snapshot!;
      const src = { volume_content_source: { snapshot: { snapshot_id: s.snapshot_id! } } };
      assert.equal(await codeOf(create({ name: 'r', ...src, ...range(0, GiB) })), 'OUT_OF_RANGE');
      const r = (await create({ name: 'r', ...src })).volume!;
      assert.equal(r.capacity_bytes, 2 * GiB);
      assert.deepEqual(r.content_source, { snapshot: { snapshot_id: s.snapshot_id! } });
      const big = (await create({ name: 'big', ...src, ...range(3 * GiB) })).volume!;
      assert.equal(big.capacity_bytes, 3 * GiB);
      assert.equal(await codeOf(create({ name: 'r', volume_content_source: { volume: { volume_id: v.volume_id! } } })), 'ALREADY_EXISTS');
      assert.equal(await codeOf(create({ name: 'r' })), 'ALREADY_EXISTS');
      const clone = (await create({ name: 'clone', volume_content_source: { volume: { volume_id: v.volume_id! } } })).volume!;
      assert.equal(clone.capacity_bytes, 2 * GiB);
      assert.deepEqual(fd.dm.violations, []);
    });
    it('block volumes carry no fs type', async () => {
      const v = (await create({ volume_capabilities: [blockCap()] })).volume!;
      assert.equal(v.volume_context!.accessType, 'block');
      assert.equal(v.volume_context!.fsType, '');
      assert.equal(await codeOf(create({ name: 'm', volume_content_source: { volume: { volume_id: v.volume_id! } } })), 'INVALID_ARGUMENT');
    });
    it('a topology this node is not in is RESOURCE_EXHAUSTED', async () => {
      const topo = (await create({ name: 'ok' })).volume!.accessible_topology![0]!.segments!;
      assert.deepEqual(Object.values(topo), ['node-1']);
      const key = Object.keys(topo)[0]!;
      const req = { accessibility_requirements: { requisite: [{ segments: { [key]: 'other-node' } }], preferred: [] } };
      assert.equal(await codeOf(create(req)), 'RESOURCE_EXHAUSTED');
      const here = { accessibility_requirements: { requisite: [{ segments: { [key]: 'other-node' } }, { segments: { [key]: 'node-1' } }], preferred: [] } };
      assert.equal(await codeOf(create({ name: 'here', ...here })), 'OK');
    });
    it('replaces a Faulty half-made volume of the same name', async () => {
      const { DmError } = await import('../../../src/devmapper/types.ts');
      fd.dm.inject({ op: 'message', match: /create_thin/, when: 'after', error: new DmError('timeout', 'slow') });
      fd.dm.inject({ op: 'message', match: /delete/, error: new DmError('unknown', 'broken') });
      assert.equal(await codeOf(create()), 'DEADLINE_EXCEEDED');
      assert.equal((await fd.store.listDevices())[0]?.state, 'Faulty');
      const v = (await create()).volume!;
      assert.equal((await fd.store.getDevice(v.volume_id!))?.state, 'Created');
      assert.equal(fd.dm.metadataThinIds(POOL).length, 1);
    });
  });

  describe('DeleteVolume', () => {
    it('an unknown id is OK, twice is OK, an empty id is INVALID_ARGUMENT', async () => {
      assert.equal(await codeOf(del('vol-00000000000000000000000000000000')), 'OK');
      assert.equal(await codeOf(del('nonsense')), 'OK');
      assert.equal(await codeOf(del('')), 'INVALID_ARGUMENT');
      const v = (await create()).volume!;
      await del(v.volume_id!);
      await del(v.volume_id!);
      assert.deepEqual(await fd.store.listDevices(), []);
      assert.deepEqual(fd.dm.metadataThinIds(POOL), []);
    });
    it('a volume in use is FAILED_PRECONDITION and stays', async () => {
      const v = (await create()).volume!;
      const dev = await fd.driver.devices.activate(ctx, v.volume_id!);
      fd.dm.adjustOpen(dev, 1);
      assert.equal(await codeOf(del(v.volume_id!)), 'FAILED_PRECONDITION');
      assert.equal((await fd.store.getDevice(v.volume_id!))?.state, 'Activated');
      fd.dm.adjustOpen(dev, -1);
      assert.equal(await codeOf(del(v.volume_id!)), 'OK');
    });
    it('a failed delete marks the volume Faulty and a retry finishes it', async () => {
      const { DmError } = await import('../../../src/devmapper/types.ts');
      const v = (await create()).volume!;
      fd.dm.inject({ op: 'message', match: /delete/, error: new DmError('unknown', 'broken') });
      assert.equal(await codeOf(del(v.volume_id!)), 'INTERNAL');
      const rec = await fd.store.getDevice(v.volume_id!);
      assert.equal(rec?.state, 'Faulty');
      assert.equal(rec?.faultyFrom, 'Removing');
      assert.equal(await codeOf(del(v.volume_id!)), 'OK');
      assert.equal(await fd.store.getDevice(v.volume_id!), undefined);
      assert.deepEqual(fd.dm.metadataThinIds(POOL), []);
      await fd.driver.pool.settled();
      assert.equal((await fd.store.getPool())?.transactionId, (await fd.dm.poolStatus(ctx, POOL)).transactionId);
    });
    it('a snapshot id is not deleted by DeleteVolume', async () => {
      const v = (await create()).volume!;
      const s = (await snap('s', v.volume_id!)).snapshot!;
      await del(s.snapshot_id!);
      assert.ok(await fd.store.getDevice(s.snapshot_id!));
    });
  });

  describe('ValidateVolumeCapabilities', () => {
    const validate = (id: string, caps: VolumeCapability__Output[]) => c.ValidateVolumeCapabilities(ctx, validateReq({ volume_id: id, volume_capabilities: caps }));
    it('confirms supported capabilities, not others; NOT_FOUND and INVALID_ARGUMENT per spec', async () => {
      const v = (await create()).volume!;
      assert.ok((await validate(v.volume_id!, [mountCap()])).confirmed);
      assert.equal((await validate(v.volume_id!, [blockCap()])).confirmed, null);
      assert.equal((await validate(v.volume_id!, [mountCap('xfs')])).confirmed, null, 'an ext4 volume is not an xfs volume');
      assert.ok((await validate(v.volume_id!, [mountCap(''), mountCap('ext4', 'SINGLE_NODE_READER_ONLY')])).confirmed);
      assert.equal((await validate(v.volume_id!, [mountCap('ext4', 'MULTI_NODE_MULTI_WRITER')])).confirmed, null);
      assert.equal(await codeOf(validate('vol-00000000000000000000000000000000', [mountCap()])), 'NOT_FOUND');
      assert.equal(await codeOf(validate(v.volume_id!, [])), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(validate('', [mountCap()])), 'INVALID_ARGUMENT');
    });
  });

  describe('ListVolumes', () => {
    const list = (max: number, token = '') => c.ListVolumes(ctx, listVolumesReq({ max_entries: max, starting_token: token }));
    it('pages with tokens; a bad token is ABORTED, a negative max_entries INVALID_ARGUMENT', async () => {
      const ids = new Set<string>();
      for (const n of ['a', 'b', 'c', 'd', 'e']) ids.add((await create({ name: n, ...range(MiB) })).volume!.volume_id!);
      assert.equal((await list(0)).entries.length, 5);
      const seen: string[] = [];
      let token = '';
      do {
        const page = await list(2, token);
        assert.ok(page.entries.length <= 2);
        seen.push(...page.entries.map((e) => e.volume.volume_id!));
        token = page.next_token;
      } while (token);
      assert.deepEqual(new Set(seen), ids);
      assert.equal(seen.length, 5);
      assert.equal(await codeOf(list(2, 'not-a-token')), 'ABORTED');
      assert.equal(await codeOf(list(-1)), 'INVALID_ARGUMENT');
    });
  });

  describe('GetCapacity', () => {
    it('reports free space, and 0 for a full pool or unsupported capabilities', async () => {
      const cap = (o: Fields<'GetCapacity'> = {}) => c.GetCapacity(ctx, capacityReq(o));
      const full = (await cap()).available_capacity as number;
      assert.ok(full > 15 * GiB && full <= 16 * GiB, String(full));
      assert.equal((await cap({ volume_capabilities: [mountCap('ext4', 'MULTI_NODE_MULTI_WRITER')] })).available_capacity, 0);
      // What external-provisioner's capacity controller sends (an empty mount, access mode UNKNOWN).
      assert.equal((await cap({ volume_capabilities: [mountCap('', 'UNKNOWN')] })).available_capacity, full);
      assert.equal((await cap({ volume_capabilities: [mountCap('vfat', 'UNKNOWN')] })).available_capacity, 0);
      assert.equal((await cap({ accessible_topology: { segments: { 'no-such-key': 'x' } } })).available_capacity, full);
      const node = fd.driver.node.NodeGetInfo().accessible_topology.segments;
      const key = Object.keys(node)[0]!;
      assert.equal((await cap({ accessible_topology: { segments: { [key]: 'other-node' } } })).available_capacity, 0);
      assert.equal((await cap({ accessible_topology: { segments: node } })).available_capacity, full);
      fd.dm.setPoolMode(POOL, 'out_of_data_space');
      assert.equal((await cap()).available_capacity, 0);
    });
  });

  describe('ControllerExpandVolume', () => {
    const expand = (id: string, required: number, limit = 0, cap: VolumeCapability__Output | null = null) => c.ControllerExpandVolume(ctx, expandReq({ volume_id: id, capacity_range: { required_bytes: required, limit_bytes: limit }, volume_capability: cap }));
    it('grows, never shrinks, OUT_OF_RANGE on a limit below the size, node expansion for mount only', async () => {
      const v = (await create()).volume!;
      const r = await expand(v.volume_id!, 2 * GiB);
      assert.equal(r.capacity_bytes, 2 * GiB);
      assert.equal(r.node_expansion_required, true);
      assert.equal((await expand(v.volume_id!, GiB)).capacity_bytes, 2 * GiB);
      assert.equal(await codeOf(expand(v.volume_id!, 0, GiB)), 'OUT_OF_RANGE');
      assert.equal(await codeOf(expand('vol-00000000000000000000000000000000', GiB)), 'NOT_FOUND');
      assert.equal(await codeOf(expand('', GiB)), 'INVALID_ARGUMENT');
      assert.equal(await codeOf(expand(v.volume_id!, 1024 ** 5)), 'OUT_OF_RANGE');
      const b = (await create({ name: 'blk', volume_capabilities: [blockCap()] })).volume!;
      assert.equal((await expand(b.volume_id!, 2 * GiB)).node_expansion_required, false);
    });
  });

  describe('ControllerGetVolume', () => {
    const get = (id: string) => c.ControllerGetVolume(ctx, getVolumeReq(id));
    it('reports the condition: Faulty is abnormal, a failed pool too', async () => {
      const v = (await create()).volume!;
      const ok = await get(v.volume_id!);
      assert.equal(ok.volume.volume_id, v.volume_id!);
      assert.equal(ok.status.volume_condition.abnormal, false);
      await fd.driver.devices.markFaulty(v.volume_id!, 'Resuming', 'test');
      assert.equal((await get(v.volume_id!)).status.volume_condition.abnormal, true);
      assert.equal(await codeOf(get('vol-00000000000000000000000000000000')), 'NOT_FOUND');
      const w = (await create({ name: 'w' })).volume!;
      fd.dm.setPoolMode(POOL, 'fail');
      assert.equal((await get(w.volume_id!)).status.volume_condition.abnormal, true);
    });
  });
});
