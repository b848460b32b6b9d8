// Shared setup for the Kubernetes-mode tests: the API server TEST DOUBLE, fake kernels per
// node, node agents, and the controller service over a KubeBackend.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControllerService } from '../../../src/controller/service.ts';
import type { VolumeCapability__Output } from '../../../src/csi/generated/csi/v1/VolumeCapability.ts';
import { FakeDeviceMapper } from '../../doubles/devmapper/fake.ts';
import { KubeBackend } from '../../../src/kube/backend.ts';
import { KubeGroupBackend } from '../../../src/kube/group-backend.ts';
import { GroupControllerService } from '../../../src/controller/groups.ts';
import { startKubeNode, type KubeNode, type KubeNodeParts } from '../../../src/kube/node.ts';
import { FakeMounter } from '../../doubles/mount/fake.ts';
import { FakeLoopDevices } from '../../doubles/mount/fake-loop.ts';
import { createVolumeReq } from '../../support/requests.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { background as ctx, type OpContext } from '../../../src/system/context.ts';
import { TOPOLOGY_KEY } from '../../../src/version.ts';
import type { BackingFs } from '../../../src/pool/backing.ts';
import { startApiDouble, type ApiDouble } from '../../doubles/kube-api/index.ts';
import { sleep } from '../../../src/system/delay.ts';

export const MiB = 1024 * 1024;
export const POOL = 'pool';
/** 1 GiB of data, 64 KiB blocks. */
const POOL_TABLE = '0 2097152 thin-pool /dev/loop1 /dev/loop0 128 32768 1 skip_block_zeroing';
const CRD_DIR = new URL('../../../deploy/crds/', import.meta.url);
export const CRD_FILES = ['dmthin.csi.io_thinpools.yaml', 'dmthin.csi.io_thinvolumes.yaml', 'dmthin.csi.io_thinsnapshots.yaml', 'dmthin.csi.io_thingroupsnapshots.yaml'];

export function loadCrds(): unknown[] {
  // js-yaml, not client-node's loadYaml: that maps a CRD to its typed model, which drops x-kubernetes-validations.
  return CRD_FILES.map((f) => load(readFileSync(new URL(f, CRD_DIR), 'utf8')));
}

export interface World {
  d: ApiDouble;
  api: CustomObjectsApi;
  controller: ControllerService;
  groupController: GroupControllerService;
  backend: KubeBackend;
  dms: Map<string, FakeDeviceMapper>;
  mounters: Map<string, FakeMounter>;
  nodes: Map<string, KubeNode>;
  /** Each node's state directory is `join(stateDir, node)`. */
  stateDir: string;
  /**
   * `extra.backing`: the filesystem under the pool's files (/dev/loop1, /dev/loop0); default none:
   * device-backed. `extra.channel`/`extra.snapshotMetadata`: the node's channel and what it serves.
   */
  startNode(name: string, agent?: Partial<{ resyncMs: number; retryBaseMs: number; retryMaxMs: number }>, extra?: Pick<KubeNodeParts, 'channel' | 'snapshotMetadata'> & { backing?: BackingFs }): Promise<KubeNode>;
  stopNode(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function world(): Promise<World> {
  const d = await startApiDouble({ crds: loadCrds() });
  const kc = d.kubeConfig();
  const api = kc.makeApiClient(CustomObjectsApi);
  const backend = new KubeBackend(api, { topologyKey: TOPOLOGY_KEY, defaultWaitMs: 5000, pollBaseMs: 5, pollMaxMs: 50 });
  const dms = new Map<string, FakeDeviceMapper>();
  const nodes = new Map<string, KubeNode>();
  const mounters = new Map<string, FakeMounter>();
  const stateDir = mkdtempSync(join(tmpdir(), 'dmthin-kube-'));
  const w: World = {
    d, api, backend, dms, nodes, mounters, stateDir,
    controller: new ControllerService(backend, { fsType: 'ext4' }),
    groupController: new GroupControllerService(backend, new KubeGroupBackend(api, backend)),
    async startNode(name, agentOpts = {}, extra = {}) {
      const { backing, ...parts } = extra;
      // The fake kernel outlives the agent: a restarted agent finds the devices it left.
      let dm = dms.get(name);
      if (!dm) {
        dm = new FakeDeviceMapper();
        await dm.create(ctx, POOL, POOL_TABLE);
        dms.set(name, dm);
        mounters.set(name, new FakeMounter({ devices: dm }));
      }
      const kn = await startKubeNode(ctx, {
        kc, node: name, dm, mounter: mounters.get(name)!, loops: new FakeLoopDevices(), log: silentLogger(), metadataReader: dm.metadataReader(), ...(backing ? { backing } : {}),
        pool: { kind: 'existing', name: POOL }, overprovisionRatio: 1, defaultFs: 'ext4',
        stateDir: join(stateDir, name), nodePathRoots: [],
        agent: { resyncMs: 300, retryBaseMs: 10, retryMaxMs: 200, watchRestartBaseMs: 10, ...agentOpts }, ...parts,
      });
      nodes.set(name, kn);
      return kn;
    },
    async stopNode(name) {
      await nodes.get(name)?.stop();
      nodes.delete(name);
    },
    async close() {
      for (const n of [...nodes.keys()]) await w.stopNode(n);
      await d.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return w;
}

export function deadline(ms = 5000): OpContext { return { deadline: Date.now() + ms }; }

const mountCap: VolumeCapability__Output = { mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' };

export function createReq(name: string, o: { size?: number; node?: string; snapshot?: string; volume?: string } = {}) {
  const src = o.snapshot ? { snapshot: { snapshot_id: o.snapshot }, type: 'snapshot' as const } : o.volume ? { volume: { volume_id: o.volume }, type: 'volume' as const } : null;
  const topo = o.node ? { requisite: [{ segments: { [TOPOLOGY_KEY]: o.node } }], preferred: [{ segments: { [TOPOLOGY_KEY]: o.node } }] } : null;
  return createVolumeReq({
    name, capacity_range: { required_bytes: o.size ?? 64 * MiB, limit_bytes: 0 }, volume_capabilities: [mountCap],
    volume_content_source: src, accessibility_requirements: topo,
  });
}

/** Polls `cond` (sync or async) every 10 ms for at most `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
