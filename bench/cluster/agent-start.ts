// One agent's start to Probe-ready with 10,000 other nodes' ThinVolumes in etcd, and the API
// requests it made: the first start, two clean restarts with 20 volumes of its own, and a start
// as after a crash (no list bounds kept). The measurement behind the agent-restart part of
// bench/results/CLUSTER-2026-12-07-notes.md:  node bench/cluster/agent-start.ts
import { KubeConfig } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { probeHealthy } from '../../src/assemble.ts';
import { sharedConnections } from '../../src/kube/connections.ts';
import { startKubeNode } from '../../src/kube/node.ts';
import { createLogger } from '../../src/observability/log.ts';
import { background } from '../../src/system/context.ts';
import { FakeDeviceMapper } from '../../test/doubles/devmapper/fake.ts';
import { FakeLoopDevices } from '../../test/doubles/mount/fake-loop.ts';
import { FakeMounter } from '../../test/doubles/mount/fake.ts';
import { API_VERSION, FINALIZER, NODE_LABEL } from '../../src/kube/types.ts';
import { sleep } from '../../src/system/delay.ts';
import { BenchPlane, delta } from './plane.ts';
import { floorCreate, runPool } from './workload.ts';

const root = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'dmthin-agent-start-'));
const plane = new BenchPlane({ root, dir: join(dir, 'plane'), logs: join(dir, 'logs'), etcdPort: 23400, apiPort: 23402 });
await plane.up(root, dir);
await plane.registerNodes(['n0']);
const kc = new KubeConfig(); kc.loadFromFile(plane.kubeconfig); sharedConnections(kc);
const log = createLogger({ level: 'error' });
const dm = new FakeDeviceMapper();
await dm.create(background, 'pool', '0 134217728 thin-pool /dev/loop1 /dev/loop0 128 32768 1 skip_block_zeroing');
const mounter = new FakeMounter({ devices: dm });
const stateDir = join(dir, 'n0');
async function start() {
  const before = await plane.requests();
  const t0 = performance.now();
  const kn = await startKubeNode(background, { kc, node: 'n0', dm, mounter, loops: new FakeLoopDevices(), log, pool: { kind: 'existing', name: 'pool' }, overprovisionRatio: 100, defaultFs: 'ext4', stateDir, nodePathRoots: [] });
  if (!(await probeHealthy(kn.identity)())) throw new Error('not ready');
  const ms = performance.now() - t0;
  const d = delta(await plane.requests(), before);
  console.log(`start ${ms.toFixed(0)} ms`, JSON.stringify(Object.fromEntries(Object.entries(d).filter(([k, v]) => v && !k.includes('lease')))));
  return kn;
}
const VOLS = '/apis/dmthin.csi.io/v1alpha1/thinvolumes';
await runPool(10000, 32, (i) => floorCreate(plane.admin, `f-${i}`, i + 1));
let kn = await start();
for (let i = 0; i < 20; i++) {
  await plane.admin.create(VOLS, { apiVersion: API_VERSION, kind: 'ThinVolume', metadata: { name: `own-${i}`, labels: { [NODE_LABEL]: 'n0' }, finalizers: [FINALIZER] }, spec: { nodeName: 'n0', sizeBytes: 64 << 20, csiName: `own-${i}`, accessType: 'mount', fsType: 'ext4' } });
}
for (let t = 0; t < 600; t++) {
  const l = await plane.admin.get(`${VOLS}?labelSelector=${encodeURIComponent(NODE_LABEL + '=n0')}`);
  if (l.items.filter((x: any) => x.status?.state === 'Created').length === 20) break;
  await sleep(200);
}
console.log('20 own volumes created');
for (let k = 0; k < 2; k++) { await kn.stop(); kn = await start(); }
await kn.stop();
rmSync(join(stateDir, 'list-bounds.json'), { force: true });
console.log('as after a crash (no bounds kept):');
kn = await start();
await kn.stop();
await plane.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
