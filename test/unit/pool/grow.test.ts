// Online growth of the node's pool (src/pool/grow.ts) over the fake kernel, fake loops and real
// sparse files: on request, on the low-water event up to the ceiling, refused for want of room,
// and finished at the next start after a crash between the file and the table.
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { assembleNode, type NodeSettings } from '../../../src/assemble.ts';
import { EventRecorder } from '../../../src/kube/events.ts';
import { quantityBytes, wireGrowth } from '../../../src/kube/pool-growth.ts';
import { GROW_TO_ANNOTATION, type ThinPoolCr } from '../../../src/kube/types.ts';
import { realBackingFs } from '../../../src/pool/backing.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { Metrics } from '../../../src/observability/metrics.ts';
import { type GrowDeps, type GrowthSettings, PoolGrower } from '../../../src/pool/grow.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { FakeDeviceMapper } from '../../doubles/devmapper/fake.ts';
import { FakeLoopDevices } from '../../doubles/mount/fake-loop.ts';
import { FakeMounter, SimpleBlockDevices } from '../../doubles/mount/fake.ts';
import { MemoryStore } from '../../doubles/state/memory.ts';

const MiB = 1024 ** 2;
const BS = 128; // 64 KiB blocks
const POOL = 'gp';
/** The fake formats 16384 metadata blocks: a 64 MiB metadata file is exactly what the pool uses. */
const META_BYTES = 64 * MiB;

interface World {
  dir: string;
  dm: FakeDeviceMapper;
  loops: FakeLoopDevices;
  blocks: SimpleBlockDevices;
  deps: GrowDeps;
  files: { data: string; metadata: string };
  /** Bytes the filesystem under the files can still give (the test sets it). */
  room: number;
  grower(settings?: GrowthSettings): PoolGrower;
  totalBytes(): Promise<number>;
}

async function sparse(file: string, bytes: number): Promise<void> {
  await (await open(file, 'w')).close();
  await truncate(file, bytes);
}

async function fileWorld(dataBytes: number): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'dmthin-grow-'));
  const files = { data: join(dir, 'data.img'), metadata: join(dir, 'metadata.img') };
  await sparse(files.data, dataBytes);
  await sparse(files.metadata, META_BYTES);
  const dm = new FakeDeviceMapper();
  const loops = new FakeLoopDevices();
  const blocks = new SimpleBlockDevices();
  const data = await loops.attach(ctx, files.data);
  const metadata = await loops.attach(ctx, files.metadata);
  await dm.create(ctx, POOL, `0 ${dataBytes / 512} thin-pool ${metadata} ${data} ${BS} 1`);
  const model = {
    sizeOf: (p: string) => loops.sizeOf(p) ?? blocks.sizeOf(p) ?? dm.sizeOf(p),
    adjustOpen: (p: string, d: number) => (dm.sizeOf(p) !== undefined ? dm.adjustOpen(p, d) : blocks.adjustOpen(p, d)),
  };
  const w: World = {
    dir, dm, loops, blocks, files, room: 1024 * MiB,
    deps: { dm, loops, mounter: new FakeMounter({ devices: model }), log: silentLogger(), metrics: new Metrics(), fs: { ...realBackingFs, availableBytes: async () => w.room } },
    grower: (settings = {}) => new PoolGrower(w.deps, POOL, { dataDevice: data, metadataDevice: metadata, files }, settings),
    totalBytes: async () => (await dm.poolStatus(ctx, POOL)).totalDataBlocks * BS * 512,
  };
  return w;
}

/** A thin device of the pool, written `bytes` at a time by the test. */
async function thin(w: World, id: number, bytes: number): Promise<string> {
  await w.dm.message(ctx, POOL, `create_thin ${id}`);
  const info = (await w.dm.info(ctx, POOL))!;
  await w.dm.create(ctx, `t${id}`, `0 ${bytes / 512} thin ${info.major}:${info.minor} ${id}`);
  return `t${id}`;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const growths = async (w: World) => (await w.deps.metrics.poolGrowths.get()).values.map((v) => `${v.labels.outcome}/${v.labels.reason}=${v.value}`).sort();

describe('PoolGrower', () => {
  let w: World;
  beforeEach(async () => { w = await fileWorld(64 * MiB); });
  afterEach(() => rm(w.dir, { recursive: true, force: true }));

  it('grows a file pool on request: the file, the loop, the table (reload, suspend --noflush, resume), checked in the status', async () => {
    const g = w.grower();
    g.request(128 * MiB);
    w.dm.ops.length = 0;
    const o = await g.check(ctx);
    assert.deepEqual(o, { kind: 'grown', reason: 'requested', fromBytes: 64 * MiB, toBytes: 128 * MiB });
    assert.equal((await stat(w.files.data)).size, 128 * MiB);
    assert.equal(w.loops.sizeOf('/dev/loop0'), 128 * MiB, 'losetup -c');
    assert.equal(await w.totalBytes(), 128 * MiB);
    assert.deepEqual(w.dm.ops.filter((op) => ['reload', 'suspend', 'resume'].includes(op.op)).map((op) => op.op + (op.args.includes('--noflush') ? ' --noflush' : '')),
      ['reload', 'suspend --noflush', 'resume']);
    assert.equal((await w.dm.info(ctx, POOL))?.suspended, false);
    assert.equal(await g.check(ctx), undefined, 'a second check has nothing to do');
    assert.deepEqual(await growths(w), ['grown/requested=1']);
  });

  it('refuses what the filesystem cannot hold, grows no file, and says it once', async () => {
    const g = w.grower();
    g.request(64 * MiB + 1000);
    assert.equal(await g.check(ctx), undefined, 'less than a data block more is the size it has, not a refusal');
    w.room = 10 * MiB; // the sparse file holds nothing yet: 10 MiB is all the pool data could ever get
    g.request(128 * MiB);
    const o = await g.check(ctx);
    assert.equal(o?.kind, 'refused');
    assert.equal(o?.kind === 'refused' && o.reason, 'no_room');
    assert.equal((await stat(w.files.data)).size, 64 * MiB);
    assert.equal(await w.totalBytes(), 64 * MiB);
    await g.check(ctx);
    assert.deepEqual(await growths(w), ['refused/no_room=1'], 'the same refusal is counted once');
    w.room = 100 * MiB;
    assert.deepEqual(await g.check(ctx), { kind: 'grown', reason: 'requested', fromBytes: 64 * MiB, toBytes: 100 * MiB }, 'as far as the room goes');
  });

  it('grows by itself on the low-water event, step by step, up to the ceiling, then refuses with the ceiling', async () => {
    const g = w.grower({ maxDataBytes: 96 * MiB, lowWaterPercent: 10, stepPercent: 25 });
    const t = await thin(w, 1, 256 * MiB);
    const events: string[] = [];
    g.onOutcome = (o) => events.push(o.kind === 'grown' ? `grown ${o.fromBytes / MiB}->${o.toBytes / MiB}` : `${o.kind} ${o.reason}`);
    g.start(3_600_000); // only events wake it: no periodic check in this test
    try {
      await until(async () => (await w.dm.poolTable(ctx, POOL)).lowWaterMark === 103, 'the low-water mark set to 10% of the pool');
      w.dm.write(t, 60 * MiB); // 4 MiB left of 64: under the mark
      await until(async () => (await w.totalBytes()) === 80 * MiB, 'the first step (25%)');
      w.dm.write(t, 14 * MiB, 60 * MiB); // 6 MiB left of 80
      await until(async () => (await w.totalBytes()) === 96 * MiB, 'the second step, capped at the ceiling');
      w.dm.write(t, 14 * MiB, 74 * MiB); // 8 MiB left of 96
      await until(() => events.includes('refused ceiling'), 'the refusal at the ceiling');
    } finally {
      await g.stop();
    }
    assert.deepEqual(events, ['grown 64->80', 'grown 80->96', 'refused ceiling']);
    assert.equal((await stat(w.files.data)).size, 96 * MiB);
  });

  it('stops at once while waiting for the pool event', async () => {
    const g = w.grower({ maxDataBytes: 96 * MiB });
    g.start(3_600_000);
    await until(() => w.dm.ops.some((op) => op.op === 'waitEvent'), 'the wait');
    const t0 = performance.now();
    await g.stop();
    assert.ok(performance.now() - t0 < 1_000, 'stop does not wait for an event');
  });

  const start = (dataBytes: number) => {
    const settings: NodeSettings = { nodeId: 'n', pool: { kind: 'loop', name: POOL, dir: w.dir, dataBytes, metadataBytes: META_BYTES, blockSectors: BS, features: [] }, overprovisionRatio: 1, defaultFs: 'ext4', stateDir: w.dir, nodePathRoots: [] };
    return assembleNode(ctx, settings, { dm: w.dm, mounter: w.deps.mounter as FakeMounter, loops: w.loops, log: silentLogger(), metrics: w.deps.metrics }, new MemoryStore(), { controller: true });
  };

  it('a stop that comes during a check ends the loop when the check does, not at the next event', async () => {
    let release!: () => void;
    let asked = false;
    const held = new Promise<void>((r) => { release = r; });
    w.deps.fs = { ...realBackingFs, availableBytes: async () => { asked = true; await held; return 0; } }; // refused: no reload, so no event either
    const g = w.grower(); // no automatic growth: its low-water mark would reload the table, an event
    g.request(80 * MiB);
    g.start(3_600_000);
    await until(() => asked, 'the check under way');
    const stopped = g.stop().then(() => 'stopped');
    release();
    const late = new Promise((r) => setTimeout(() => r('still waiting'), 2_000).unref());
    assert.equal(await Promise.race([stopped, late]), 'stopped', 'the wait after the check sees the stop');
  });

  it('a start with a larger --loop-data-size grows the live file pool before serving', async () => {
    await start(64 * MiB);
    assert.equal(await w.totalBytes(), 64 * MiB, 'the same size: nothing to do');
    await start(112 * MiB);
    assert.equal(await w.totalBytes(), 112 * MiB);
    assert.equal((await stat(w.files.data)).size, 112 * MiB);
    await start(64 * MiB);
    assert.equal(await w.totalBytes(), 112 * MiB, 'a smaller size never shrinks it');
    assert.deepEqual(await growths(w), ['grown/requested=1']);
  });

  it('a crash after the file grew (loop not refreshed, table not reloaded) is finished at the next start', async () => {
    await truncate(w.files.data, 96 * MiB); // what the crash left
    const parts = await start(64 * MiB);
    assert.equal(await w.totalBytes(), 96 * MiB);
    assert.equal(await parts.pool.capacity(ctx), (96 * MiB) - (await parts.pool.health(ctx)).dataUsedBytes, 'capacity says the new size');
    assert.ok(parts.grower, 'a file pool has its grower');
    assert.deepEqual(await growths(w), ['grown/device_grew=1']);
  });

  it('a device pool takes a grown data device at its next check, and refuses a request to grow a file it does not have', async () => {
    w.blocks.add('/dev/vdb', 64 * MiB);
    w.blocks.add('/dev/vdc', META_BYTES);
    await w.dm.remove(ctx, POOL);
    const dm2 = new FakeDeviceMapper();
    await dm2.create(ctx, 'dp', `0 ${(64 * MiB) / 512} thin-pool /dev/vdc /dev/vdb ${BS} 1`);
    const g = new PoolGrower({ ...w.deps, dm: dm2 }, 'dp', { dataDevice: '/dev/vdb', metadataDevice: '/dev/vdc' });
    assert.equal(await g.check(ctx), undefined);
    w.blocks.resize('/dev/vdb', 100 * MiB);
    assert.deepEqual(await g.check(ctx), { kind: 'grown', reason: 'device_grew', fromBytes: 64 * MiB, toBytes: 100 * MiB });
    g.request(200 * MiB);
    const o = await g.check(ctx);
    assert.equal(o?.kind === 'refused' && o.reason, 'not_file');
  });

  it('the kernel not taking the size is a failure, and the pool is left resumed', async () => {
    const g = w.grower();
    g.request(128 * MiB);
    w.dm.inject({ op: 'resume', error: new Error('resume refused'), times: 1 });
    await assert.rejects(g.check(ctx), /resume refused/);
    assert.equal((await w.dm.info(ctx, POOL))?.suspended, false, 'the old table resumed');
    assert.equal(await w.totalBytes(), 64 * MiB);
    assert.deepEqual(await g.check(ctx), { kind: 'grown', reason: 'device_grew', fromBytes: 64 * MiB, toBytes: 128 * MiB }, 'the next check takes the grown file');
  });
});

describe('the ThinPool side of growth', () => {
  it('reads sizes as Kubernetes quantities', () => {
    assert.equal(quantityBytes('300Gi'), 300 * 1024 ** 3);
    assert.equal(quantityBytes('1T'), 1e12);
    assert.equal(quantityBytes('5368709120'), 5368709120);
    assert.equal(quantityBytes('lots'), undefined);
    assert.equal(quantityBytes('0'), undefined);
  });

  it('the grow-to annotation asks for a size; each outcome is an Event on the ThinPool, a growth has its status rewritten', async () => {
    const w = await fileWorld(64 * MiB);
    try {
      const g = w.grower();
      const events = new EventRecorder(undefined, 'test', 'n1', silentLogger());
      let changed = 0;
      const onPool = wireGrowth(g, events, 'n1', () => { changed++; });
      const cr = (value: string) => ({ metadata: { name: 'n1', annotations: { [GROW_TO_ANNOTATION]: value } } }) as unknown as ThinPoolCr;
      onPool(cr('many'));
      onPool(cr('many'));
      onPool(cr('128Mi'));
      await g.check(ctx);
      assert.deepEqual(events.recent.map((e) => `${e.type} ${e.reason} ${e.name}`), ['Warning PoolGrowthRefused n1', 'Normal PoolGrown n1']);
      assert.match(events.recent[1]!.message, /grew from 67108864 to 134217728 bytes \(requested\)/);
      assert.equal(changed, 1);
    } finally {
      await rm(w.dir, { recursive: true, force: true });
    }
  });
});
