// The controller's SnapshotMetadata forwarder over the channel, end to end on loopback: the
// sidecar's view (the controller's socket) against the node's own answer, codes, cancellation,
// deadlines and backpressure through both hops.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import type { ThinPoolCr } from '../../../../src/kube/types.ts';
import { until } from '../harness.ts';
import { everyOther } from './fake-metadata.ts';
import { channelWorld, collect, ranges, type ChannelWorld } from './world.ts';

const GiB = 1024 ** 3;
/** Ranges of the big snapshot; sent PER to a message, its ~3 MB are far more than every buffer on the way holds. */
const BIG = 200_000;
const PER = 100;

describe('SnapshotMetadata forwarded from the controller to the snapshot\'s node', () => {
  let c: ChannelWorld;
  const ids: Record<string, string> = {};
  before(async () => {
    c = await channelWorld();
    ids.a1 = await c.snapshot('n1', 'a1');
    ids.a2 = await c.snapshot('n1', 'a2');
    ids.b1 = await c.snapshot('n2', 'b1');
    c.fakes.get('n1')!.add(ids.a1, GiB, everyOther(300));
    c.fakes.get('n1')!.add(ids.a2, GiB, [...everyOther(200), ...everyOther(150, 1000 * 65536)]);
    c.fakes.get('n2')!.add(ids.b1, GiB, everyOther(10));
    ids.big = await c.snapshot('n1', 'big');
    c.fakes.get('n1')!.add(ids.big, GiB, everyOther(BIG));
  });
  after(() => c.close());

  it('publishes the agent\'s address and certificate fingerprint in its ThinPool status', () => {
    const pool = c.w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr;
    assert.match(pool.status!.channel!.address, /^127\.0\.0\.1:\d+$/);
    assert.match(pool.status!.channel!.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.notEqual(pool.status!.channel!.fingerprint, (c.w.d.object('thinpools.dmthin.csi.io', 'n2') as unknown as ThinPoolCr).status!.channel!.fingerprint);
  });

  it('a delta through the controller equals the node\'s direct answer, message for message', async () => {
    const req = { base_snapshot_id: ids.a1, target_snapshot_id: ids.a2, starting_offset: 0, max_results: 7 };
    const viaController = await collect(c.controller, 'GetMetadataDelta', req).done;
    const { client, metadata } = await c.dialer().dial('n1');
    const direct = await collect(client, 'GetMetadataDelta', req, { metadata }).done;
    assert.equal(viaController.error, undefined);
    assert.equal(direct.error, undefined);
    assert.deepEqual(viaController.messages, direct.messages);
    assert.equal(ranges(viaController).length, 150, 'the ranges a2 has and a1 lacks');
    assert.ok(viaController.messages.every((m) => m.block_metadata.length <= 7 && m.volume_capacity_bytes === GiB));
  });

  it('allocated ranges of a snapshot on the other node come from that node', async () => {
    const r = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.b1, starting_offset: 0, max_results: 0 }).done;
    assert.deepEqual(ranges(r), everyOther(10));
  });

  it('codes: missing id, unknown snapshot, two nodes, and the node\'s own codes unchanged', async () => {
    const code = async (method: 'GetMetadataAllocated' | 'GetMetadataDelta', req: object) => (await collect(c.controller, method, req).done).error;
    assert.equal((await code('GetMetadataAllocated', { snapshot_id: '' }))?.code, Code.INVALID_ARGUMENT);
    assert.equal((await code('GetMetadataDelta', { base_snapshot_id: ids.a1, target_snapshot_id: '' }))?.code, Code.INVALID_ARGUMENT);
    assert.equal((await code('GetMetadataAllocated', { snapshot_id: 'snap-0123456789abcdef0123456789abcdef' }))?.code, Code.NOT_FOUND);
    assert.equal((await code('GetMetadataAllocated', { snapshot_id: '../thinvolumes/x' }))?.code, Code.NOT_FOUND);
    const two = await code('GetMetadataDelta', { base_snapshot_id: ids.a1, target_snapshot_id: ids.b1 });
    assert.equal(two?.code, Code.INVALID_ARGUMENT);
    assert.match(two!.details, /not snapshots of the same volume/);
    const range = await code('GetMetadataAllocated', { snapshot_id: ids.a1, starting_offset: 2 * GiB });
    assert.equal(range?.code, Code.OUT_OF_RANGE);
    assert.equal(range?.details, `starting_offset ${2 * GiB} is outside the volume (${GiB} bytes)`, 'the node\'s message, as it was');
  });

  it('the client\'s cancel cancels the node\'s work', async () => {
    const fake = c.fakes.get('n1')!;
    const before = fake.aborted;
    const call = collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.big, starting_offset: 0, max_results: 1 },
      { onMessage: (s, n) => { if (n === 3) s.cancel(); } });
    const r = await call.done;
    assert.equal(r.error?.code, Code.CANCELLED);
    await until(() => fake.aborted > before, 'the node\'s stream aborted');
    assert.ok(fake.produced < BIG, 'the node stopped producing');
  });

  it('the client\'s deadline becomes the node call\'s deadline', async () => {
    const fake = c.fakes.get('n1')!;
    const deadline = Date.now() + 30_000;
    const r = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.a1, starting_offset: 0, max_results: 0 }, { deadline }).done;
    assert.equal(r.error, undefined);
    const seen = fake.contexts.at(-1)!.deadline!;
    assert.ok(Math.abs(seen - deadline) < 2000, `node saw deadline ${seen - deadline} ms from the client's`);
  });

  it('a reader that stops reading stops the node\'s producer (backpressure through both hops)', async () => {
    const fake = c.fakes.get('n1')!;
    const start = fake.produced;
    const call = collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.big, starting_offset: 0, max_results: PER },
      { onMessage: (s, n) => { if (n === 1) s.pause(); } });
    // Wait until the producer stalls: no new message for 300 ms.
    let last = -1;
    await until(async () => {
      const now = fake.produced;
      const stalled = now === last;
      last = now;
      await new Promise((r) => setTimeout(r, 300));
      return stalled && fake.produced === now;
    }, 'the producer stalls', 20_000);
    const buffered = fake.produced - start;
    assert.ok(buffered < BIG / PER / 2, `only what the buffers hold was produced (${buffered} of ${BIG / PER} messages)`);
    call.stream.resume();
    const r = await call.done;
    assert.equal(r.error, undefined);
    assert.equal(r.messages.length, BIG / PER, 'everything arrives once the reader reads again');
    assert.deepEqual(ranges(r).slice(0, 3), everyOther(3));
  });

  it('a node that publishes no channel, or cannot be reached, is UNAVAILABLE', async () => {
    c.w.d.mutate('thinpools.dmthin.csi.io', 'n2', (o) => { o.status = { ...(o.status as object), channel: undefined }; });
    const none = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.b1 }).done;
    assert.equal(none.error?.code, Code.UNAVAILABLE);
    assert.match(none.error!.details, /publishes no channel/);
    const n1 = (c.w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr).status!.channel!;
    await c.w.stopNode('n2');
    c.w.d.mutate('thinpools.dmthin.csi.io', 'n2', (o) => { o.status = { ...(o.status as object), channel: { ...n1, address: '127.0.0.1:1' } }; });
    const gone = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: ids.b1 }, { deadline: Date.now() + 10_000 }).done;
    assert.equal(gone.error?.code, Code.UNAVAILABLE);
  });
});
