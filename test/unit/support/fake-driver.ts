import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DriverConfig } from '../../../src/cli/config.ts';
import type { BackingFs } from '../../../src/pool/backing.ts';
import { createDriver, type Driver } from '../../../src/driver.ts';
import { FakeDeviceMapper } from '../../doubles/devmapper/fake.ts';
import { FakeLoopDevices } from '../../doubles/mount/fake-loop.ts';
import { FakeMounter } from '../../doubles/mount/fake.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { background, type OpContext } from '../../../src/system/context.ts';
import { MemoryStore } from '../../doubles/state/memory.ts';
import type { FakeThinTools } from '../../doubles/devmapper/fake-thin-tools.ts';
import { TRANSITIONAL } from '../../../src/pool/transition.ts';

export const POOL = 'test-pool';
export const BLOCK_SECTORS = 128; // 64 KiB
export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
export const ctx: OpContext = background;

export interface FakeDriverOptions {
  /** Pool data size in bytes; default 16 GiB. */
  dataBytes?: number;
  metadataBlocks?: number;
  nodeId?: string;
  overprovisionRatio?: number;
  /** `--node-path-root` values; default none. */
  nodePathRoots?: string[];
  /** The pool's clock for reading ages (ms); default performance.now. */
  clock?: () => number;
  /** The filesystem under the pool's files (its table names /dev/fake-meta and /dev/fake-data); default none: device-backed. */
  backing?: BackingFs;
}

export interface FakeDriver {
  driver: Driver;
  dm: FakeDeviceMapper;
  /** The fake thin_dump/thin_delta the driver reads block maps with. */
  tools: FakeThinTools;
  mounter: FakeMounter;
  loops: FakeLoopDevices;
  store: MemoryStore;
  cfg: DriverConfig;
  /** A temp dir for staging/target paths (real fs calls create them). */
  dir: string;
  /** A process restart: a new driver over the same fake kernel and store (reconcile runs), after the old one settled. */
  restart(): Promise<Driver>;
  /** A node reboot: every dm device goes, the pool is re-created over the same metadata, then a restart. */
  reboot(): Promise<Driver>;
  /**
   * Lets the pending transaction-id stamps land, then forgets the recorded dm calls: a test that
   * asserts an operation's exact calls must not see an earlier change's deferred stamp among them.
   */
  clearOps(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A thin pool created directly in the fake, adopted by the driver as an existing pool. */
export async function fakeDriver(opts: FakeDriverOptions = {}): Promise<FakeDriver> {
  const dm = new FakeDeviceMapper({ metadataBlocks: opts.metadataBlocks });
  const dataSectors = Math.floor((opts.dataBytes ?? 16 * GiB) / 512 / BLOCK_SECTORS) * BLOCK_SECTORS;
  const poolTable = `0 ${dataSectors} thin-pool /dev/fake-meta /dev/fake-data ${BLOCK_SECTORS} 32`;
  await dm.create(ctx, POOL, poolTable);
  const mounter = new FakeMounter({ devices: dm });
  const loops = new FakeLoopDevices();
  const store = new MemoryStore();
  const dir = await mkdtemp(join(tmpdir(), 'dmthin-unit-'));
  const cfg: DriverConfig = {
    endpoint: `unix://${join(dir, 'csi.sock')}`,
    stateDir: dir,
    nodeId: opts.nodeId ?? 'node-1',
    pool: { kind: 'existing', name: POOL },
    defaultFs: 'ext4',
    overprovisionRatio: opts.overprovisionRatio ?? 1,
    metricsAddress: undefined,
    logLevel: 'error',
    nodePathRoots: opts.nodePathRoots ?? [],
  };
  const log = silentLogger();
  const tools = dm.metadataReader();
  const build = () => createDriver(ctx, cfg, { dm, mounter, loops, store, groups: store, log, metadataReader: tools, ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.backing ? { backing: opts.backing } : {}) });
  const fd: FakeDriver = {
    driver: await build(), dm, tools, mounter, loops, store, cfg, dir,
    async restart() {
      await fd.driver.pool.settled(); // the stop a restart stands for lets the last stamp land
      fd.driver = await build();
      return fd.driver;
    },
    async reboot() {
      dm.simulateReboot();
      await dm.create(ctx, POOL, poolTable);
      return fd.restart();
    },
    async clearOps() {
      await fd.driver.pool.settled();
      dm.ops.length = 0;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  return fd;
}

/** The invariants a reconciled driver must hold, as one comparable object. */
export async function convergence(fd: FakeDriver) {
  const recs = await fd.store.listDevices();
  const infos = await fd.dm.infoAll(ctx);
  const status = await fd.dm.poolStatus(ctx, POOL);
  return {
    transitional: recs.filter((r) => TRANSITIONAL.has(r.state)).map((r) => `${r.id}:${r.state}`),
    suspended: infos.filter((i) => i.suspended).map((i) => i.name),
    poolIdsMatchRecords: JSON.stringify(fd.dm.metadataThinIds(POOL)) === JSON.stringify(recs.map((r) => r.deviceId).sort((a, b) => a - b)),
    txInSync: status.transactionId === (await fd.store.getPool())?.transactionId,
  };
}

export const CONVERGED = { transitional: [], suspended: [], poolIdsMatchRecords: true, txInSync: true };

export { blockCap, mountCap } from '../../support/requests.ts';
