// One process of simulated nodes for the cluster bench: the real node agent code (startKubeNode:
// CrdStore, NodeAgent with its watches, the pool and Devices layers, the CSI Node service
// objects) for each node it is given, over the in-memory device-mapper and mounter of
// test/doubles. Driven by its parent over IPC (bench/cluster/hosts.ts).
import { KubeConfig } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeHealthy } from '../../src/assemble.ts';
import { sharedConnections } from '../../src/kube/connections.ts';
import { startKubeNode, type KubeNode } from '../../src/kube/node.ts';
import { createLogger } from '../../src/observability/log.ts';
import { background } from '../../src/system/context.ts';
import { FakeDeviceMapper } from '../../test/doubles/devmapper/fake.ts';
import { FakeLoopDevices } from '../../test/doubles/mount/fake-loop.ts';
import { FakeMounter } from '../../test/doubles/mount/fake.ts';

export const POOL = 'pool';
/** 64 GiB of data in 64 KiB blocks: room for any bench's volumes at the overprovision ratio below. */
const POOL_TABLE = '0 134217728 thin-pool /dev/loop1 /dev/loop0 128 32768 1 skip_block_zeroing';

export type HostRequest =
  | { op: 'stats' }
  | { op: 'restart'; node: string }
  | { op: 'stop' };

/** `thinDevices`: thin devices in the node's (fake) pool metadata, to check every delete reached the kernel. */
export interface AgentStats { node: string; own: number; foreign: number; thinDevices: number }
export interface HostStats { pid: number; agents: AgentStats[] }

interface Sim { dm: FakeDeviceMapper; mounter: FakeMounter; kn?: KubeNode }

const kc = new KubeConfig();
kc.loadFromFile(process.env.KUBECONFIG!);
sharedConnections(kc); // as src/cli/kube.ts's kubeConfig() does for `dmthin-csi node`
const nodes = (process.env.BENCH_NODES ?? '').split(',').filter(Boolean);
const stateDir = mkdtempSync(join(tmpdir(), 'dmthin-cbench-'));
const log = createLogger({ level: process.env.LOG_LEVEL ?? 'error' });
const sims = new Map<string, Sim>();

/** Starts (or restarts) one node's agent; the fake kernel outlives it, as a real node's does. */
async function start(node: string): Promise<number> {
  let sim = sims.get(node);
  if (!sim) {
    const dm = new FakeDeviceMapper();
    await dm.create(background, POOL, POOL_TABLE);
    sim = { dm, mounter: new FakeMounter({ devices: dm }) };
    sims.set(node, sim);
  }
  const t0 = performance.now();
  const kn = await startKubeNode(background, {
    kc, node, dm: sim.dm, mounter: sim.mounter, loops: new FakeLoopDevices(), log,
    pool: { kind: 'existing', name: POOL }, overprovisionRatio: 100, defaultFs: 'ext4',
    stateDir: join(stateDir, node), nodePathRoots: [],
  });
  if (!(await probeHealthy(kn.identity)())) throw new Error(`node ${node}: Probe not ready after start`);
  sim.kn = kn;
  return performance.now() - t0;
}

function stats(): HostStats {
  const agents = [...sims.entries()].map(([node, s]) => ({ node, ...s.kn!.agent.watchEvents, thinDevices: s.dm.metadataThinIds(POOL).length }));
  return { pid: process.pid, agents };
}

async function handle(msg: HostRequest): Promise<unknown> {
  switch (msg.op) {
    case 'stats': return stats();
    case 'restart': {
      const sim = sims.get(msg.node)!;
      await sim.kn!.stop();
      return { ms: await start(msg.node) };
    }
    case 'stop':
      for (const s of sims.values()) await s.kn?.stop();
      rmSync(stateDir, { recursive: true, force: true });
      setImmediate(() => process.exit(0));
      return {};
  }
}

process.on('message', (m: { id: number; req: HostRequest }) => {
  handle(m.req).then((res) => process.send!({ id: m.id, res }), (err: unknown) => process.send!({ id: m.id, error: String((err as Error)?.stack ?? err) }));
});

// A few at a time: each start lists three resources and writes the ThinPool.
const t0 = performance.now();
for (let i = 0; i < nodes.length; i += 5) await Promise.all(nodes.slice(i, i + 5).map(start));
process.send!({ ready: true, ms: performance.now() - t0 });
