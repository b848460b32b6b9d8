// Kubernetes mode: the grow-to annotation on the ThinPool, read by the node agent, grows the
// node's file pool online; the ThinPool gets a PoolGrown Event and its status the new size.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startKubeNode, type KubeNode } from '../../../src/kube/node.ts';
import { GROW_TO_ANNOTATION, type ThinPoolCr } from '../../../src/kube/types.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { FakeDeviceMapper } from '../../doubles/devmapper/fake.ts';
import { startApiDouble, type ApiDouble } from '../../doubles/kube-api/index.ts';
import { FakeLoopDevices } from '../../doubles/mount/fake-loop.ts';
import { FakeMounter } from '../../doubles/mount/fake.ts';
import { loadCrds, MiB, until } from './harness.ts';

const POOL = 'pool';
const THINPOOLS = 'thinpools.dmthin.csi.io';

describe('kube mode: growing the node pool from its ThinPool', () => {
  /** The API server double, the node, its fake kernel and its files' directory, set up once. */
  let w: { d: ApiDouble; kn: KubeNode; dm: FakeDeviceMapper; dir: string };
  const annotate = (value: string) => w.d.mutate(THINPOOLS, 'n1', (o) => {
    const m = o.metadata as { annotations?: Record<string, string> };
    m.annotations = { ...m.annotations, [GROW_TO_ANNOTATION]: value };
  });
  before(async () => {
    const d = await startApiDouble({ crds: loadCrds() });
    const dir = await mkdtemp(join(tmpdir(), 'dmthin-kube-grow-'));
    const pool = join(dir, 'pool');
    await mkdir(pool);
    for (const [f, size] of [['data.img', 64 * MiB], ['metadata.img', 64 * MiB]] as const) {
      await (await open(join(pool, f), 'w')).close();
      await truncate(join(pool, f), size);
    }
    const dm = new FakeDeviceMapper();
    const loops = new FakeLoopDevices();
    const data = await loops.attach(ctx, join(pool, 'data.img'));
    const meta = await loops.attach(ctx, join(pool, 'metadata.img'));
    await dm.create(ctx, POOL, `0 ${(64 * MiB) / 512} thin-pool ${meta} ${data} 128 1`);
    const devices = { sizeOf: (p: string) => loops.sizeOf(p) ?? dm.sizeOf(p), adjustOpen: (p: string, n: number) => dm.adjustOpen(p, n) };
    const kn = await startKubeNode(ctx, {
      kc: d.kubeConfig(), node: 'n1', dm, mounter: new FakeMounter({ devices }), loops, log: silentLogger(),
      pool: { kind: 'loop', name: POOL, dir: pool, dataBytes: 64 * MiB, metadataBytes: 64 * MiB, blockSectors: 128, features: [] },
      overprovisionRatio: 1, defaultFs: 'ext4', stateDir: join(dir, 'state'), nodePathRoots: [],
      agent: { resyncMs: 100, retryBaseMs: 10, retryMaxMs: 100, watchRestartBaseMs: 10 },
    });
    w = { d, kn, dm, dir };
  });
  after(async () => {
    await w.kn.stop();
    await w.d.close();
    await rm(w.dir, { recursive: true, force: true });
  });

  it('grows the data file, the loop and the table to the annotated size, says so, and shows it in the status', async () => {
    assert.ok(w.kn.grower, 'a file pool has a grower');
    annotate('96Mi');
    await until(async () => (await w.dm.poolStatus(ctx, POOL)).totalDataBlocks === 1536, 'the pool at 96 MiB');
    assert.equal((await stat(join(w.dir, 'pool', 'data.img'))).size, 96 * MiB);
    await until(() => w.kn.events.recent.some((e) => e.reason === 'PoolGrown'), 'the PoolGrown Event');
    const ev = w.kn.events.recent.find((e) => e.reason === 'PoolGrown')!;
    assert.equal(ev.name, 'n1');
    assert.match(ev.message, /grew from 67108864 to 100663296 bytes \(requested\)/);
    await until(() => (w.d.object(THINPOOLS, 'n1') as unknown as ThinPoolCr).status?.dataTotalBytes === 96 * MiB, 'the ThinPool status at the new size');
  });

  it('a value that is not a size is refused with an Event, and nothing changes', async () => {
    annotate('huge');
    await until(() => w.kn.events.recent.some((e) => e.reason === 'PoolGrowthRefused' && e.message.includes('"huge" is not a size')), 'the refusal');
    assert.equal((await w.dm.poolStatus(ctx, POOL)).totalDataBlocks, 1536);
  });
});
