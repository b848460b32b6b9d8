/**
 * Changed-block tracking in Kubernetes mode on a real kernel: the real `dmthin-csi controller`
 * and `dmthin-csi node` processes against the API double, the node agent serving its channel
 * (TLS, pinned certificate, TokenReview against the double) and the controller forwarding
 * SnapshotMetadata to it. A delta taken through the controller's socket (the sidecar's seat) is
 * the node's own answer, message for message, and proven by reconstruction (reconstruct.ts)
 * from restores of both snapshots; a resumed read through the forwarder continues exactly.
 */
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadCsi } from '../../src/csi/proto.ts';
import { CHANNEL_AUDIENCE } from '../../src/kube/channel/auth.ts';
import { ChannelDialer } from '../../src/kube/channel/client.ts';
import { publishedEndpoint } from '../../src/kube/channel/snapshot-metadata.ts';
import { callStream } from '../../src/kube/channel/stream.ts';
import type { ThinPoolCr } from '../../src/kube/types.ts';
import { blockCap, GiB, MiB } from '../support/csi-client.ts';
import { MetadataClient, rangesOf, readResumed, type MetadataResponse } from '../support/metadata-client.ts';
import { KUBELET, POOL, sh, STATE } from './harness.ts';
import { KubeWorld, staging, until, type Proc } from './kube-world.ts';
import { reconstructAllocated, reconstructDelta, type Window } from './reconstruct.ts';

const CONTROLLER_USER = 'system:serviceaccount:default:dmthin-csi-controller';
const BLOCK = 64 * 1024;
const devPath = (id: string) => `${KUBELET}/pods/${id}-dev`;

/** KubeWorld with the channel configured as the chart configures it (pod IP: loopback here). */
class ChannelWorld extends KubeWorld {
  readonly tokenFile = join(STATE, 'channel-token');
  override launch(args: string[], env: Record<string, string> = {}): Proc {
    const channel: Record<string, string> = args[0] === 'controller'
      ? { DMTHIN_SNAPSHOT_METADATA: 'true', DMTHIN_CHANNEL_TOKEN_FILE: this.tokenFile }
      : { DMTHIN_CHANNEL_PORT: '0', DMTHIN_CHANNEL_BIND: '127.0.0.1', DMTHIN_CHANNEL_ADDRESS: '127.0.0.1', DMTHIN_CHANNEL_CLIENT: CONTROLLER_USER };
    return super.launch(args, { ...channel, ...env });
  }
}

const w = new ChannelWorld();
let md: MetadataClient;
let dialer: ChannelDialer;
const report: Record<string, unknown> = {};

async function blockVolume(name: string, snapshotId?: string): Promise<string> {
  const r = await w.csi.ctrl.controller.call('CreateVolume', { name, capacity_range: { required_bytes: GiB }, volume_capabilities: [blockCap()],
    accessibility_requirements: w.topology, volume_content_source: snapshotId ? { snapshot: { snapshot_id: snapshotId } } : null }, 180_000);
  const id = r.volume.volume_id as string;
  await w.csi.node.node.call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: blockCap() });
  await w.csi.node.node.call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: devPath(id), volume_capability: blockCap(), readonly: false });
  return id;
}

async function unpublish(id: string): Promise<void> {
  await w.csi.node.node.call('NodeUnpublishVolume', { volume_id: id, target_path: devPath(id) });
  await w.csi.node.node.call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
}

const snapshot = async (name: string, volumeId: string) => (await w.csi.ctrl.controller.call('CreateSnapshot', { name, source_volume_id: volumeId }, 180_000)).snapshot.snapshot_id as string;

/** Writes bytes that differ per generation and offset, and remembers the pool blocks touched. */
function writeAt(id: string, touched: Window[], gen: number, offset: number, len: number): void {
  const buf = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4) buf.writeUInt32LE(((offset + i) ^ (gen << 24)) >>> 0, i);
  const fd = openSync(devPath(id), 'r+');
  try {
    writeSync(fd, buf, 0, len, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  touched.push({ start: Math.floor(offset / BLOCK) * BLOCK, end: Math.ceil((offset + len) / BLOCK) * BLOCK });
}

/** The node's own answer: the same call on its channel, as the controller makes it. */
async function direct(method: 'GetMetadataDelta' | 'GetMetadataAllocated', req: object): Promise<MetadataResponse[]> {
  const { client, metadata } = await dialer.dial(w.node);
  const out: MetadataResponse[] = [];
  await callStream({ client, metadata, method: (loadCsi().csi.v1.SnapshotMetadata.service as grpc.ServiceDefinition)[method]! }, { deadline: Date.now() + 120_000 }, req, async (r: MetadataResponse) => { out.push(r); });
  return out;
}

describe('SnapshotMetadata forwarded from the controller to the node agent, on a real pool', { timeout: 600_000 }, () => {
  before(async () => {
    await w.start();
    writeFileSync(w.tokenFile, w.api.tokens.serviceAccount('default', 'dmthin-csi-controller', [CHANNEL_AUDIENCE]), { mode: 0o600 });
    await until('the node channel published', async () => ((w.api.object('thinpools.dmthin.csi.io', w.node) as unknown as ThinPoolCr | undefined)?.status?.channel ? true : undefined));
    md = new MetadataClient(w.ctrlEp);
    dialer = new ChannelDialer({ lookup: publishedEndpoint(w.api.kubeConfig().makeApiClient(CustomObjectsApi)), token: async () => readFileSync(w.tokenFile, 'utf8') });
  });
  after(async () => {
    md?.close();
    dialer?.close();
    await w.stop();
    console.log(`kube-snapshot-metadata report: ${JSON.stringify(report)}`);
  });

  const ids: Record<string, string> = {};
  const touched: Window[] = [];

  it('the controller advertises SNAPSHOT_METADATA_SERVICE', async () => {
    const caps = await w.csi.ctrl.identity.call('GetPluginCapabilities');
    assert.ok(caps.capabilities.some((c: { service?: { type: string } }) => c.service?.type === 'SNAPSHOT_METADATA_SERVICE'));
  });

  it('a delta through the controller is the node\'s answer, and base + delta rebuilds the target', async () => {
    ids.v = await blockVolume('cbt-v');
    for (let i = 0; i < 12; i++) writeAt(ids.v, touched, 1, i * 61 * MiB + (i % 3) * 4096, 4096 * (1 + i * 5));
    writeAt(ids.v, touched, 1, 500 * MiB, 4 * MiB);
    ids.s1 = await snapshot('cbt-s1', ids.v);
    writeAt(ids.v, touched, 2, 61 * MiB, 4096); // inside an old run
    writeAt(ids.v, touched, 2, 500 * MiB + MiB + 512, MiB); // across blocks of the long run
    sh('blkdiscard', ['-o', String(502 * MiB), '-l', String(MiB), devPath(ids.v)]);
    touched.push({ start: 502 * MiB, end: 503 * MiB });
    writeAt(ids.v, touched, 2, 900 * MiB, 3 * BLOCK); // new
    ids.s2 = await snapshot('cbt-s2', ids.v);
    await unpublish(ids.v);

    const req = { base_snapshot_id: ids.s1, target_snapshot_id: ids.s2, starting_offset: 0, max_results: 0 };
    const via = await md.delta(req);
    assert.equal(via.code, 'OK', via.details);
    assert.deepEqual(via.responses, await direct('GetMetadataDelta', req), 'the forwarder passes the node\'s stream through unchanged');
    ids.r1 = await blockVolume('cbt-r1', ids.s1);
    ids.r2 = await blockVolume('cbt-r2', ids.s2);
    const check = reconstructDelta(devPath(ids.r1), devPath(ids.r2), rangesOf(via), GiB, touched);
    assert.equal(check.missingBytes, 0, `no changed byte missing (first at ${check.firstMissing})`);
    report.delta = { comparedMiB: +(check.compared / MiB).toFixed(1), reportedMiB: +(check.reportedBytes / MiB).toFixed(2), falseChangedMiB: +(check.falseChangedBytes / MiB).toFixed(2) };
    const alloc = await md.allocated({ snapshot_id: ids.s2 });
    assert.equal(alloc.code, 'OK', alloc.details);
    const a = reconstructAllocated(devPath(ids.r2), rangesOf(alloc), GiB, touched);
    assert.equal(a.missingBytes, 0, `zeros + allocated ranges are the target (first lost byte at ${a.firstMissing})`);
  });

  it('a resumed read through the forwarder (max_results 2, cancelled every 3 responses) continues exactly, and leaves no hold', async () => {
    const whole = rangesOf(await md.allocated({ snapshot_id: ids.s2! }));
    const { ranges, calls } = await readResumed((from) => md.allocated({ snapshot_id: ids.s2!, starting_offset: from, max_results: 2 }, { cancelAfter: 3 }));
    assert.deepEqual(ranges, whole);
    assert.ok(whole.length > 6 && calls > 1, `${whole.length} ranges took ${calls} calls`);
    report.resumed = { ranges: whole.length, calls };
    await until('the node released its metadata snapshot', async () => ((w.api.object('thinpools.dmthin.csi.io', w.node) as unknown as ThinPoolCr).status?.metadataSnapshotHeld ? undefined : true), 30_000);
    assert.equal(sh('dmsetup', ['status', POOL]).trim().split(/\s+/)[6], '-', 'no metadata snapshot held in the kernel');
  });

  it('codes through the forwarder: unknown snapshot, missing id, the node\'s OUT_OF_RANGE', async () => {
    assert.equal((await md.allocated({ snapshot_id: 'snap-00000000000000000000000000000000' })).code, 'NOT_FOUND');
    assert.equal((await md.delta({ base_snapshot_id: ids.s1!, target_snapshot_id: '' })).code, 'INVALID_ARGUMENT');
    assert.equal((await md.allocated({ snapshot_id: ids.s1!, starting_offset: 2 * GiB })).code, 'OUT_OF_RANGE');
  });
});
