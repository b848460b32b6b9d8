// A node whose filesystem cannot hold its file pool says so (issue 24): the ThinPool's status
// and BackingFits condition, one Warning Event per change, and capacity no larger than what
// the filesystem holds, through the controller's GetCapacity and CreateVolume.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Code } from '@grpc/grpc-js';
import type { ThinPoolCr } from '../../../src/kube/types.ts';
import { FakeBackingFs } from '../../doubles/system/fake-backing.ts';
import { capacityReq, snapshotReq } from '../../support/requests.ts';
import { createReq, deadline, MiB, POOL, until, world, type World } from './harness.ts';

describe('a node whose filesystem cannot hold its file pool', () => {
  let w: World;
  const fs = new FakeBackingFs(300 * MiB + 64 * MiB);
  before(async () => {
    w = await world();
    fs.addFile('/var/lib/dmthin-csi/pool/data.img', 1024 * MiB, '/dev/loop0');
    fs.addFile('/var/lib/dmthin-csi/pool/metadata.img', 64 * MiB, '/dev/loop1');
    await fs.allocate(deadline(), '/var/lib/dmthin-csi/pool/metadata.img');
    await w.startNode('n1', { resyncMs: 100 }, { backing: fs });
  });
  after(() => w.close());
  const pool = () => (w.d.object('thinpools.dmthin.csi.io', 'n1') as unknown as ThinPoolCr | undefined)?.status;
  const fits = () => pool()?.conditions?.find((c) => c.type === 'BackingFits');
  const events = () => w.nodes.get('n1')!.events.recent.filter((e) => e.reason === 'BackingTooSmall' || e.reason === 'BackingFits');

  it('says so in the ThinPool status, a condition and one Warning Event, and advertises only what the filesystem holds', async () => {
    await until(() => fits() !== undefined, 'BackingFits condition written');
    assert.equal(fits()!.status, 'False');
    assert.equal(fits()!.reason, 'FilesystemTooSmall');
    assert.match(fits()!.message!, /has 314572800 bytes available, but the pool's sparse data file \(1073741824 bytes\) may still grow by 1073741824/);
    assert.equal(pool()!.dataAvailableBytes, 300 * MiB);
    assert.equal(pool()!.capacityBytes, 300 * MiB);
    assert.equal(pool()!.dataTotalBytes, 1024 * MiB, 'the pool itself is still 1 GiB');
    const cap = await w.controller.GetCapacity(deadline(), capacityReq({ accessible_topology: { segments: { 'dmthin.csi.io/node': 'n1' } } }));
    assert.equal(Number(cap.available_capacity), 300 * MiB);
    await assert.rejects(w.controller.CreateVolume(deadline(), createReq('pvc-over', { node: 'n1', size: 400 * MiB })), (e: { code: number }) => e.code === Code.RESOURCE_EXHAUSTED);
    const before = pool()!.lastReconcileTime;
    await until(() => pool()!.lastReconcileTime !== before, 'another pass');
    assert.deepEqual(events().map((e) => `${e.type} ${e.reason}`), ['Warning BackingTooSmall'], 'one Event for the change, not one per pass');
  });

  it('says so again when the filesystem has room for the whole file', async () => {
    fs.free = 2048 * MiB;
    await until(() => fits()?.status === 'True', 'BackingFits True');
    assert.equal(pool()!.capacityBytes, 1024 * MiB);
    assert.deepEqual(events().map((e) => `${e.type} ${e.reason}`), ['Warning BackingTooSmall', 'Normal BackingFits']);
  });
});

describe('kube mode: a snapshot on a full pool', () => {
  let w: World;
  before(async () => { w = await world(); await w.startNode('n1', { resyncMs: 600_000 }); });
  after(() => w.close());

  it('the agent refuses it before any suspend and the controller answers RESOURCE_EXHAUSTED, not at its deadline', async () => {
    const vol = (await w.controller.CreateVolume(deadline(), createReq('pvc-full', { node: 'n1' }))).volume!.volume_id!;
    const dm = w.dms.get('n1')!;
    await w.nodes.get('n1')!.devices.activate(deadline(), vol);
    await w.nodes.get('n1')!.pool.settled(); // a later stamp is a commit, which would take the fake pool out of out_of_data_space
    dm.setPoolMode(POOL, 'out_of_data_space');
    dm.ops.length = 0;
    // An answer at the deadline would be DEADLINE_EXCEEDED: this one is the agent's refusal.
    await assert.rejects(w.controller.CreateSnapshot(deadline(20_000), snapshotReq('snap-full', vol)), (e: { code: number; message: string }) => e.code === Code.RESOURCE_EXHAUSTED && /out of data space/.test(e.message));
    assert.deepEqual(dm.ops.filter((o) => o.op === 'suspend'), []);
  });
});
