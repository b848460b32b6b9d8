import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { GetMetadataAllocatedRequest__Output } from '../../../src/csi/generated/csi/v1/GetMetadataAllocatedRequest.ts';
import type { GetMetadataAllocatedResponse } from '../../../src/csi/generated/csi/v1/GetMetadataAllocatedResponse.ts';
import type { GetMetadataDeltaRequest__Output } from '../../../src/csi/generated/csi/v1/GetMetadataDeltaRequest.ts';
import { dmNameFor } from '../../../src/volume/ids.ts';
import { metadataSnapExclusive } from '../../../src/pool/metadata-snap.ts';
import { sleep } from '../../../src/system/delay.ts';
import type { OpContext } from '../../../src/system/context.ts';
import { codeOf } from '../../support/csi-client.ts';
import { createVolumeReq, expandReq, groupSnapshotReq, snapshotReq } from '../../support/requests.ts';
import { blockCap, ctx, fakeDriver, GiB, POOL, type FakeDriver } from '../support/fake-driver.ts';

const BLOCK = 64 * 1024;
const NO_SNAP = 'snap-00000000000000000000000000000000';

type Res = GetMetadataAllocatedResponse;
const allocReq = (snapshot_id: string, starting_offset = 0, max_results = 0): GetMetadataAllocatedRequest__Output => ({ snapshot_id, starting_offset, max_results, secrets: {} });
const deltaReq = (base: string, target: string, starting_offset = 0, max_results = 0): GetMetadataDeltaRequest__Output => ({ base_snapshot_id: base, target_snapshot_id: target, starting_offset, max_results, secrets: {} });
/** [offset, size] in blocks, for readable expectations. */
const blocks = (rs: Res[]) => rs.flatMap((r) => (r.block_metadata ?? []).map((m) => [Number(m.byte_offset) / BLOCK, Number(m.size_bytes) / BLOCK]));

describe('SnapshotMetadata over the pool', () => {
  let fd: FakeDriver;
  let vol: string;
  const write = (id: string, block: number, count = 1) => fd.dm.write(dmNameFor(id), count * BLOCK, block * BLOCK);
  const snap = async (name: string, source = vol) => (await fd.driver.controller.CreateSnapshot(ctx, snapshotReq(name, source))).snapshot!.snapshot_id!;
  const collect = async (fn: (c: OpContext, send: (r: Res) => Promise<void>) => Promise<void>, c: OpContext = ctx) => {
    const out: Res[] = [];
    await fn(c, async (r) => { out.push(r); });
    return out;
  };
  const allocated = (id: string, from = 0, max = 0) => collect((c, send) => fd.driver.snapshotMetadata.GetMetadataAllocated(c, allocReq(id, from, max), send));
  const delta = (base: string, target: string, from = 0, max = 0) => collect((c, send) => fd.driver.snapshotMetadata.GetMetadataDelta(c, deltaReq(base, target, from, max), send));
  const held = async () => ({ kernel: (await fd.dm.poolStatus(ctx, POOL)).heldMetadataRoot, record: (await fd.store.getPool())?.metadataSnapHeld ?? false });

  beforeEach(async () => {
    fd = await fakeDriver();
    vol = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: 'v', volume_capabilities: [blockCap()], capacity_range: { required_bytes: GiB, limit_bytes: 0 } }))).volume!.volume_id!;
    await fd.driver.devices.activate(ctx, vol);
  });
  afterEach(() => fd.cleanup());

  it('streams the runs a snapshot maps as merged byte ranges, with the capacity and VARIABLE_LENGTH in every response', async () => {
    write(vol, 0); write(vol, 1); write(vol, 2, 3); write(vol, 100);
    const s1 = await snap('s1');
    const res = await allocated(s1);
    assert.deepEqual(blocks(res), [[0, 5], [100, 1]], 'blocks written at different times (scattered data blocks) merge into one range');
    assert.ok(res.every((r) => r.block_metadata_type === 'VARIABLE_LENGTH' && r.volume_capacity_bytes === GiB));
    assert.deepEqual(await held(), { kernel: undefined, record: false }, 'the metadata snapshot is released after the stream');
  });

  it('a snapshot with nothing mapped answers one empty response, which still says the capacity', async () => {
    const s1 = await snap('s1');
    const res = await allocated(s1);
    assert.deepEqual(res, [{ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: GiB, block_metadata: [] }]);
  });

  it('delta: overwritten, discarded and newly written runs changed, shared and unmapped-in-both runs not', async () => {
    write(vol, 0, 4); write(vol, 10, 2); write(vol, 20);
    const s1 = await snap('s1');
    write(vol, 1); // overwritten: a new data block (copy-on-write)
    fd.dm.discard(dmNameFor(vol), 2 * BLOCK, 10 * BLOCK); // blocks 10, 11 unmapped: they read back as zeros now
    write(vol, 50, 2); // new
    const s2 = await snap('s2');
    assert.deepEqual(blocks(await delta(s1, s2)), [[1, 1], [10, 2], [50, 2]]);
    assert.deepEqual(blocks(await delta(s2, s1)), [[1, 1], [10, 2], [50, 2]], 'the same ranges either way round');
    assert.deepEqual(blocks(await delta(s1, s1)), [], 'a snapshot against itself: nothing changed');
  });

  it('max_results caps each response; starting_offset resumes exactly after the last range, or inside one', async () => {
    for (let b = 0; b < 40; b += 2) write(vol, b);
    const s1 = await snap('s1');
    const all = blocks(await allocated(s1));
    assert.equal(all.length, 20);
    const paged = await allocated(s1, 0, 3);
    assert.ok(paged.every((r) => r.block_metadata!.length <= 3));
    assert.deepEqual(blocks(paged), all);
    assert.deepEqual(blocks(await allocated(s1, 11 * BLOCK)), all.slice(6), 'from the end of range 5, the next is range 6');
    const inside = await allocated(s1, 12 * BLOCK + 100);
    assert.deepEqual(inside[0]!.block_metadata![0], { byte_offset: 12 * BLOCK + 100, size_bytes: BLOCK - 100 }, 'a range holding the offset starts at it');
    assert.deepEqual(blocks(await allocated(s1, GiB)), [], 'at the capacity: nothing left');
  });

  it('a target grown after the base reports the larger capacity, and its new runs as changed', async () => {
    write(vol, 0);
    const s1 = await snap('s1');
    await fd.driver.controller.ControllerExpandVolume(ctx, expandReq({ volume_id: vol, capacity_range: { required_bytes: 2 * GiB, limit_bytes: 0 } }));
    const grownBlock = GiB / BLOCK + 5;
    write(vol, grownBlock);
    const s2 = await snap('s2');
    const res = await delta(s1, s2);
    assert.equal(res[0]!.volume_capacity_bytes, 2 * GiB);
    assert.deepEqual(blocks(res), [[grownBlock, 1]]);
  });

  it('restores, clones and group snapshots are thin devices like any other', async () => {
    write(vol, 3);
    const s1 = await snap('s1');
    const restored = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: 'r', volume_capabilities: [blockCap()], capacity_range: { required_bytes: GiB, limit_bytes: 0 }, volume_content_source: { snapshot: { snapshot_id: s1 } } }))).volume!.volume_id!;
    await fd.driver.devices.activate(ctx, restored);
    write(restored, 7);
    const r1 = await snap('r1', restored);
    assert.deepEqual(blocks(await allocated(r1)), [[3, 1], [7, 1]]);
    const group = await fd.driver.groupController!.CreateVolumeGroupSnapshot(ctx, groupSnapshotReq('g', [vol, restored]));
    const members = group.group_snapshot!.snapshots!.map((s) => s.snapshot_id!);
    const ofRestored = group.group_snapshot!.snapshots!.find((s) => s.source_volume_id === restored)!.snapshot_id!;
    assert.equal(members.length, 2);
    assert.deepEqual(blocks(await delta(r1, ofRestored)), []);
    assert.equal(await codeOf(delta(s1, ofRestored)), 'INVALID_ARGUMENT', 'a snapshot of the restore is of another volume');
  });

  it('refuses bad arguments with the spec\'s codes, holding no metadata snapshot after', async () => {
    write(vol, 0);
    const s1 = await snap('s1');
    const other = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: 'o', volume_capabilities: [blockCap()], capacity_range: { required_bytes: GiB, limit_bytes: 0 } }))).volume!.volume_id!;
    const o1 = await snap('o1', other);
    assert.equal(await codeOf(allocated('')), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(allocated(NO_SNAP)), 'NOT_FOUND');
    assert.equal(await codeOf(allocated('nonsense')), 'NOT_FOUND');
    assert.equal(await codeOf(allocated(vol)), 'NOT_FOUND', 'a volume is not a snapshot');
    assert.equal(await codeOf(allocated(s1, -1)), 'OUT_OF_RANGE');
    assert.equal(await codeOf(allocated(s1, GiB + 1)), 'OUT_OF_RANGE');
    assert.equal(await codeOf(allocated(s1, 0, -1)), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(delta('', s1)), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(delta(s1, '')), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(delta(s1, NO_SNAP)), 'NOT_FOUND');
    assert.equal(await codeOf(delta(s1, o1)), 'INVALID_ARGUMENT', 'base and target of different volumes');
    assert.deepEqual(await held(), { kernel: undefined, record: false });
  });

  it('a snapshot deleted while the call waited for the metadata snapshot is NOT_FOUND, not an empty map', async () => {
    write(vol, 0);
    const s1 = await snap('s1');
    let release!: () => void;
    const other = metadataSnapExclusive(POOL, () => new Promise<void>((r) => { release = r; }));
    const call = allocated(s1);
    await sleep(20); // past its lookup of the record, queued for the metadata snapshot
    await fd.driver.controller.DeleteSnapshot(ctx, { snapshot_id: s1, secrets: {} });
    release();
    await other;
    assert.equal(await codeOf(call), 'NOT_FOUND');
    assert.deepEqual(fd.tools.reads, [], 'nothing was read for it');
    assert.deepEqual(await held(), { kernel: undefined, record: false });
  });

  it('one metadata snapshot at a time: concurrent streams queue, and each gets the whole answer', async () => {
    write(vol, 0, 3);
    const s1 = await snap('s1');
    const results = await Promise.all([allocated(s1, 0, 1), allocated(s1, 0, 1), delta(s1, s1), fd.driver.checkPool(ctx)]);
    assert.deepEqual(blocks(results[0]), [[0, 3]]);
    assert.deepEqual(blocks(results[1]), [[0, 3]]);
    assert.equal(results[3].metadata, 'checked', 'the reconcile\'s thin_ls waited its turn instead of finding the snapshot held');
    assert.deepEqual(await held(), { kernel: undefined, record: false });
  });

  it('a cancelled stream stops reading and releases the metadata snapshot; so does a send that fails', async () => {
    for (let b = 0; b < 200; b += 2) write(vol, b);
    const s1 = await snap('s1');
    const abort = new AbortController();
    let got = 0;
    const cancelled = fd.driver.snapshotMetadata.GetMetadataAllocated({ signal: abort.signal }, allocReq(s1, 0, 1), async () => { if (++got === 3) abort.abort(new Error('client went away')); });
    await assert.rejects(cancelled);
    assert.ok(fd.tools.yielded < 20, `the read stopped early (${fd.tools.yielded} of 100 runs read)`);
    assert.deepEqual(await held(), { kernel: undefined, record: false });
    await assert.rejects(fd.driver.snapshotMetadata.GetMetadataAllocated(ctx, allocReq(s1, 0, 1), async () => { throw new Error('transport closed'); }), /transport closed/);
    assert.deepEqual(await held(), { kernel: undefined, record: false });
  });

  it('a hold a crash left (recorded as ours) is released at the restart\'s attach; one held by another tool is UNAVAILABLE', async () => {
    write(vol, 0);
    const s1 = await snap('s1');
    await fd.store.updatePool((p) => ({ ...p!, metadataSnapHeld: true }));
    await fd.dm.message(ctx, POOL, 'reserve_metadata_snap');
    await fd.restart();
    assert.deepEqual(await held(), { kernel: undefined, record: false });
    assert.deepEqual(blocks(await allocated(s1)), [[0, 1]]);
    await fd.dm.message(ctx, POOL, 'reserve_metadata_snap'); // an operator's, not recorded as ours
    assert.equal(await codeOf(allocated(s1)), 'UNAVAILABLE');
    assert.notEqual((await held()).kernel, undefined, 'someone else\'s hold is left alone');
    assert.equal((await held()).record, false);
  });

  it('a stream holding the metadata snapshot stalls no create or snapshot, even with a pool check queued behind it', async () => {
    for (let b = 0; b < 10; b += 2) write(vol, b);
    const s1 = await snap('s1');
    let unblock!: () => void;
    const blocked = new Promise<void>((r) => { unblock = r; });
    let first = true;
    const stream = fd.driver.snapshotMetadata.GetMetadataAllocated(ctx, allocReq(s1, 0, 1), async () => { if (first) { first = false; await blocked; } });
    await sleep(20);
    assert.notEqual((await held()).kernel, undefined, 'the stream is in the middle of its read');
    const check = fd.driver.checkPool(ctx);
    await sleep(20);
    // It would wait for the stream if the check held the pool's messages meanwhile.
    const s2 = snap('s2');
    assert.notEqual(await Promise.race([s2, sleep(2000).then(() => 'stalled')]), 'stalled');
    unblock();
    await stream;
    assert.equal((await check).metadata, 'checked');
  });
});
