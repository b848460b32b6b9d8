// The production wiring: each agent serves its pool's own SnapshotMetadata (node/snapshot-metadata.ts
// over the fake kernel's block maps) on its channel, and the controller's forwarder answers with it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import { snapshotReq } from '../../../support/requests.ts';
import { createReq, deadline } from '../harness.ts';
import { channelWorld, collect, ranges, type ChannelWorld } from './world.ts';

const BLOCK = 64 * 1024;

describe('the agents\' own SnapshotMetadata, through the controller\'s forwarder', () => {
  let c: ChannelWorld;
  let base = '';
  let target = '';
  before(async () => {
    c = await channelWorld(['n1'], { poolService: true });
    const kn = c.w.nodes.get('n1')!;
    const dm = c.w.dms.get('n1')!;
    const vol = (await c.w.controller.CreateVolume(deadline(), createReq('pvc-pool', { node: 'n1' }))).volume!.volume_id!;
    await kn.devices.activate(deadline(), vol);
    const name = (await kn.store.getDevice(vol))!.dmName!;
    dm.write(name, 4 * BLOCK, 0);
    dm.write(name, BLOCK, 100 * BLOCK);
    base = (await c.w.controller.CreateSnapshot(deadline(), snapshotReq('s-base', vol))).snapshot!.snapshot_id!;
    dm.write(name, 2 * BLOCK, 2 * BLOCK); // overwrites two of the first four
    dm.write(name, BLOCK, 500 * BLOCK); // new
    target = (await c.w.controller.CreateSnapshot(deadline(), snapshotReq('s-target', vol))).snapshot!.snapshot_id!;
  });
  after(() => c.close());

  it('the delta is the changed blocks, the same through the controller as from the node', async () => {
    const req = { base_snapshot_id: base, target_snapshot_id: target, starting_offset: 0, max_results: 0 };
    const via = await collect(c.controller, 'GetMetadataDelta', req).done;
    assert.equal(via.error, undefined);
    assert.deepEqual(ranges(via), [[2 * BLOCK, 2 * BLOCK], [500 * BLOCK, BLOCK]]);
    const { client, metadata } = await c.dialer().dial('n1');
    assert.deepEqual((await collect(client, 'GetMetadataDelta', req, { metadata }).done).messages, via.messages);
  });

  it('allocated ranges, and the node\'s codes (OUT_OF_RANGE) passed through', async () => {
    const r = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: base, starting_offset: 0, max_results: 0 }).done;
    assert.deepEqual(ranges(r), [[0, 4 * BLOCK], [100 * BLOCK, BLOCK]]);
    const far = await collect(c.controller, 'GetMetadataAllocated', { snapshot_id: base, starting_offset: 2 ** 40, max_results: 0 }).done;
    assert.equal(far.error?.code, Code.OUT_OF_RANGE);
  });
});
