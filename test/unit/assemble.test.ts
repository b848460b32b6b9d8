// One composition root for a node's parts: standalone and Kubernetes node mode get the same
// pool over their own store, the same Node service, and differ only in what Identity offers.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assembleNode, type NodeSettings } from '../../src/assemble.ts';
import { CsiError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { background as ctx } from '../../src/system/context.ts';
import { TOPOLOGY_KEY } from '../../src/version.ts';
import { FakeDeviceMapper } from '../doubles/devmapper/fake.ts';
import { FakeLoopDevices } from '../doubles/mount/fake-loop.ts';
import { FakeMounter } from '../doubles/mount/fake.ts';
import { MemoryStore } from '../doubles/state/memory.ts';
import { fakeDriver } from './support/fake-driver.ts';
import { world } from './kube/harness.ts';

const TABLE = '0 2097152 thin-pool /dev/fake-meta /dev/fake-data 128 32';
const services = (caps: { capabilities: object[] }) => caps.capabilities.flatMap((c) => ('service' in c ? [(c.service as { type: string }).type] : []));

describe('assembleNode', () => {
  it('attaches the pool over the store it is given, and wires Identity and Node over it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmthin-assemble-'));
    try {
      const dm = new FakeDeviceMapper();
      await dm.create(ctx, 'p', TABLE);
      const store = new MemoryStore();
      const metrics = new Metrics();
      const settings: NodeSettings = { nodeId: 'n7', pool: { kind: 'existing', name: 'p' }, overprovisionRatio: 2, defaultFs: 'ext4', stateDir: dir, nodePathRoots: [] };
      const sys = { dm, mounter: new FakeMounter({ devices: dm }), loops: new FakeLoopDevices(), log: silentLogger(), metrics };
      const parts = await assembleNode(ctx, settings, sys, store, { controller: true, groupController: true });
      assert.equal(parts.store, store);
      assert.equal(parts.pool.deps.store, store, 'the pool keeps its records in the given store');
      assert.equal(parts.pool.deps.metrics, metrics);
      assert.equal(parts.metrics, metrics);
      assert.equal(parts.devices.pool, parts.pool);
      assert.equal(parts.pool.name, 'p');
      assert.deepEqual(parts.node.NodeGetInfo(), { node_id: 'n7', max_volumes_per_node: 0, accessible_topology: { segments: { [TOPOLOGY_KEY]: 'n7' } } });
      assert.deepEqual(services(parts.identity.GetPluginCapabilities()), ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'GROUP_CONTROLLER_SERVICE']);
      assert.deepEqual(await parts.identity.Probe(ctx), { ready: { value: true } });
      const nodeOnly = await assembleNode(ctx, settings, sys, new MemoryStore(), { controller: false });
      assert.deepEqual(services(nodeOnly.identity.GetPluginCapabilities()), []);
      await assert.rejects(assembleNode(ctx, { ...settings, pool: { kind: 'existing', name: 'absent' } }, sys, store, { controller: false }),
        (err: unknown) => err instanceof CsiError && /thin pool absent does not exist/.test(err.message), 'the pool is ensured first');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives standalone and Kubernetes node mode the same node parts, each over its own store', async () => {
    const fd = await fakeDriver({ nodeId: 'n1' });
    const w = await world();
    try {
      const kn = await w.startNode('n1');
      const standalone = fd.driver;
      assert.equal(standalone.pool.deps.store, fd.store);
      assert.equal(kn.pool.deps.store, kn.store, 'node mode: the pool over its CrdStore');
      assert.deepEqual(kn.node.NodeGetInfo(), standalone.node.NodeGetInfo());
      assert.deepEqual(kn.node.NodeGetCapabilities(), standalone.node.NodeGetCapabilities());
      assert.deepEqual(services(standalone.identity.GetPluginCapabilities()), ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'GROUP_CONTROLLER_SERVICE', 'SNAPSHOT_METADATA_SERVICE']);
      assert.deepEqual(services(kn.identity.GetPluginCapabilities()), [], 'node mode offers no Controller');
      assert.deepEqual(await kn.identity.Probe(ctx), await standalone.identity.Probe(ctx));
    } finally {
      await w.close();
      await fd.cleanup();
    }
  });
});
