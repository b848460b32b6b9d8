/**
 * The driver on a real kernel: standalone mode in the qemu guest, driven over gRPC through
 * every CSI RPC. Runs sequentially; each step builds on the previous one's volumes.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync, openSync, writeSync, fsyncSync, closeSync, readSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { blockCap, codeOf, GiB, MiB, mountCap } from '../support/csi-client.ts';
import { assertTxSettled, KUBELET, liveThins, POOL, poolThinIds, records, ROOT, sh, startDriver, STATE, stopDriver, tail, type DriverProcess } from './harness.ts';
import { spawnSync } from 'node:child_process';
import { sleep } from '../../src/system/delay.ts';

let d: DriverProcess;
const C = () => d.clients.controller;
const N = () => d.clients.node;
const METRICS = '127.0.0.1:19808';
const staging = (v: string) => `${KUBELET}/staging/${v}`;
const target = (v: string) => `${KUBELET}/pods/${v}/mount`;

async function createVol(name: string, size = GiB, cap: object = mountCap(), source?: object) {
  const r = await C().call('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [cap], volume_content_source: source ?? null });
  return r.volume as { volume_id: string; capacity_bytes: string | number; content_source?: { volume?: { volume_id: string } } };
}

async function stageAndPublish(id: string, cap: object = mountCap()) {
  await N().call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: cap });
  await N().call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: cap, readonly: false });
}

async function teardown(id: string) {
  await N().call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
  await N().call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
}

/** Appends fsynced numbered lines; returns how many were durable when asked. */
function startWriter(file: string) {
  const fd = openSync(file, 'a');
  let durable = 0;
  let stop = false;
  const done = (async () => {
    for (let i = 1; !stop; i++) {
      writeSync(fd, `line ${i} ${'x'.repeat(200)}\n`);
      fsyncSync(fd);
      durable = i;
      await new Promise((r) => setImmediate(r));
    }
    closeSync(fd);
  })();
  return { durable: () => durable, stop: async () => { stop = true; await done; } };
}

function lines(file: string): number {
  const text = readFileSync(file, 'utf8');
  const all = text.split('\n').filter(Boolean);
  all.forEach((l, i) => assert.ok(l.startsWith(`line ${i + 1} `), `line ${i + 1} is intact`));
  return all.length;
}

describe('standalone driver on a real dm-thin pool', { timeout: 1_800_000 }, () => {
  const ids: Record<string, string> = {};

  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
    d = await startDriver(['--metrics-address', METRICS, '--log-level', 'debug']); // debug: every command, for commandsDuring()
  });

  after(async () => {
    if (d) {
      const code = await stopDriver(d);
      if (code !== 0) console.log(tail(d.log));
    }
  });

  it('identifies itself and is ready', async () => {
    const info = await d.clients.identity.call('GetPluginInfo');
    assert.equal(info.name, 'dmthin.csi.io');
    const caps = await d.clients.identity.call('GetPluginCapabilities');
    assert.ok(caps.capabilities.some((c: any) => c.service?.type === 'CONTROLLER_SERVICE'));
    const node = await N().call('NodeGetInfo');
    assert.equal(node.node_id, 'rk-node');
    assert.deepEqual(node.accessible_topology.segments, { 'dmthin.csi.io/node': 'rk-node' });
    // A file pool offers no more than its filesystem can still give the data file (ratio 1 here);
    // the other lane's suites share that filesystem, so its room is read on both sides of the call.
    const room = () => { const fs = statfsSync(STATE); return fs.bavail * fs.bsize; };
    const before = room();
    const cap = await C().call('GetCapacity', {});
    const most = Math.max(before, room());
    assert.ok(Number(cap.available_capacity) > 0, `capacity ${cap.available_capacity}`);
    assert.ok(Number(cap.available_capacity) <= most, `capacity ${cap.available_capacity} within the filesystem's ${most}`);
  });

  it('creates a volume idempotently and refuses incompatible repeats', async () => {
    const v = await createVol('data-1');
    ids.v1 = v.volume_id;
    assert.equal(Number(v.capacity_bytes), GiB);
    assert.equal((await createVol('data-1')).volume_id, v.volume_id);
    assert.equal(await codeOf(createVol('data-1', 2 * GiB)), 'ALREADY_EXISTS');
    assert.equal(await codeOf(createVol('data-1', GiB, blockCap())), 'ALREADY_EXISTS');
  });

  it('answers bad requests with the spec codes', async () => {
    assert.equal(await codeOf(createVol('bad/name')), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(C().call('CreateVolume', { name: 'no-caps', volume_capabilities: [] })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(createVol('multi', GiB, mountCap('ext4', 'MULTI_NODE_MULTI_WRITER'))), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(createVol('btrfs', GiB, mountCap('btrfs'))), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(createVol('huge', 2 ** 52)), 'OUT_OF_RANGE');
    assert.equal(await codeOf(C().call('CreateVolume', { name: 'range', capacity_range: { required_bytes: 2 * GiB, limit_bytes: GiB }, volume_capabilities: [mountCap()] })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(createVol('from-nothing', GiB, mountCap(), { snapshot: { snapshot_id: 'snap-00000000000000000000000000000000' } })), 'NOT_FOUND');
    assert.equal(await codeOf(N().call('NodeStageVolume', { volume_id: 'vol-00000000000000000000000000000000', staging_target_path: '/var/lib/x', volume_capability: mountCap() })), 'NOT_FOUND');
    assert.equal(await codeOf(N().call('NodeStageVolume', { volume_id: ids.v1, staging_target_path: 'relative/path', volume_capability: mountCap() })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(N().call('NodeStageVolume', { volume_id: ids.v1, staging_target_path: '/var/lib/../../etc', volume_capability: mountCap() })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(C().call('ControllerExpandVolume', { volume_id: 'vol-00000000000000000000000000000000', capacity_range: { required_bytes: GiB } })), 'NOT_FOUND');
    assert.equal(await codeOf(C().call('ListVolumes', { starting_token: 'garbage' })), 'ABORTED');
    assert.equal(await codeOf(C().call('ControllerPublishVolume', { volume_id: ids.v1, node_id: 'rk-node' })), 'UNIMPLEMENTED');
  });

  it('stages (mkfs + mount) and publishes a volume, idempotently', async () => {
    await stageAndPublish(ids.v1!);
    // A thin device never written reads zeros: mkfs marked every inode table zeroed, so the
    // kernel's lazy init has none to write out (provisioning pool blocks for zeros).
    const groups = sh('dumpe2fs', [`/dev/mapper/dmthin-${ids.v1}`]).split('\n').filter((l) => /^Group \d+:/.test(l));
    assert.ok(groups.length > 1 && groups.every((g) => g.includes('ITABLE_ZEROED')), groups.join('\n'));
    // A fresh device: mkfs is the only process stage starts (no blkid, no mount); publish none.
    const stageSpawns = spawnedAnyDuring(d.log, 'NodeStageVolume', { volume_id: ids.v1!, staging_target_path: staging(ids.v1!) });
    assert.ok(stageSpawns.length > 0 && stageSpawns.every((c) => c.startsWith('mkfs.ext4 ')), stageSpawns.join('\n'));
    assert.deepEqual(spawnedAnyDuring(d.log, 'NodePublishVolume', { volume_id: ids.v1!, target_path: target(ids.v1!) }), []);
    await stageAndPublish(ids.v1!);
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    assert.match(mounts, new RegExp(`${staging(ids.v1!)} ext4`));
    assert.match(mounts, new RegExp(`${target(ids.v1!)} ext4`));
    writeFileSync(`${target(ids.v1!)}/hello.txt`, 'hello from the first volume\n');
    sh('sync', []);
  });

  it('refuses to delete a volume in use', async () => {
    assert.equal(await codeOf(C().call('DeleteVolume', { volume_id: ids.v1 })), 'FAILED_PRECONDITION');
  });

  it('snapshots a volume under write consistently and restores it larger', async () => {
    const writer = startWriter(`${target(ids.v1!)}/log.txt`);
    await sleep(1500);
    const before = writer.durable();
    const snap = await C().call('CreateSnapshot', { name: 'snap-1', source_volume_id: ids.v1 });
    await writer.stop();
    assert.equal(snap.snapshot.ready_to_use, true);
    assert.equal(snap.snapshot.source_volume_id, ids.v1);
    ids.s1 = snap.snapshot.snapshot_id;
    assert.equal((await C().call('CreateSnapshot', { name: 'snap-1', source_volume_id: ids.v1 })).snapshot.snapshot_id, ids.s1);
    assert.ok(liveThins().every((t) => !t.suspended), 'origin resumed');
    // The mounted origin was suspended, all in process: no dmsetup spawned.
    const cmds = commandsDuring(d.log, 'CreateSnapshot');
    assert.ok(cmds.includes(`suspend dmthin-${ids.v1}`), cmds.join('\n'));
    assert.deepEqual(spawnedDuring(d.log, 'CreateSnapshot'), []);
    const v2 = await createVol('restored-1', 2 * GiB, mountCap(), { snapshot: { snapshot_id: ids.s1 } });
    ids.v2 = v2.volume_id;
    // The snapshot has no table: one message and nothing done to the snapshot, no dmsetup spawned.
    const restoreCmds = commandsDuring(d.log, 'CreateVolume', { name: 'restored-1' });
    assert.ok(restoreCmds.some((c) => c.startsWith(`message ${POOL} 0 create_snap `)), restoreCmds.join('\n'));
    assert.ok(!restoreCmds.some((c) => c.includes(`dmthin-${ids.s1}`) && !c.startsWith('info ')), restoreCmds.join('\n'));
    assert.deepEqual(spawnedDuring(d.log, 'CreateVolume', { name: 'restored-1' }), []);
    assert.equal(Number(v2.capacity_bytes), 2 * GiB);
    await stageAndPublish(ids.v2!);
    const restored = lines(`${target(ids.v2!)}/log.txt`);
    assert.ok(restored >= before, `snapshot holds every line fsynced before it: ${restored} >= ${before}`);
    assert.equal(readFileSync(`${target(ids.v2!)}/hello.txt`, 'utf8'), 'hello from the first volume\n');
    const fs = statfsSync(target(ids.v2!));
    assert.ok(fs.blocks * fs.bsize > 1.5 * GiB, `restored filesystem grown to the larger size (${fs.blocks * fs.bsize})`);
  });

  it('clones a volume, suspending it even when its /dev/mapper node is gone', async () => {
    // Without the node, the kernel is still asked about the live source (by name), and it is suspended.
    rmSync(`/dev/mapper/dmthin-${ids.v1}`);
    let v3;
    try {
      v3 = await createVol('clone-1', GiB, mountCap(), { volume: { volume_id: ids.v1 } });
    } finally {
      sh('dmsetup', ['mknodes', `dmthin-${ids.v1}`]);
    }
    const cmds = commandsDuring(d.log, 'CreateVolume', { name: 'clone-1' });
    assert.ok(cmds.some((c) => c.startsWith('info') && c.endsWith(` dmthin-${ids.v1}`)), cmds.join('\n'));
    assert.ok(cmds.includes(`suspend dmthin-${ids.v1}`), cmds.join('\n'));
    ids.v3 = v3.volume_id;
    assert.equal(v3.content_source?.volume?.volume_id, ids.v1);
    await stageAndPublish(ids.v3!);
    assert.equal(readFileSync(`${target(ids.v3!)}/hello.txt`, 'utf8'), 'hello from the first volume\n');
  });

  it('expands a mounted volume online', async () => {
    const r = await C().call('ControllerExpandVolume', { volume_id: ids.v1, capacity_range: { required_bytes: 3 * GiB }, volume_capability: mountCap() });
    assert.equal(Number(r.capacity_bytes), 3 * GiB);
    assert.equal(r.node_expansion_required, true);
    // The live size from the kernel's table, the pool's status (a resume on a full pool would
    // freeze the volume), then a table load and the resume that swaps it in.
    const cmds = commandsDuring(d.log, 'ControllerExpandVolume', { volume_id: ids.v1! });
    assert.deepEqual(cmds.map((c) => c.split(' ')[0]), ['table', 'status', 'load', 'resume'], cmds.join('\n'));
    assert.deepEqual(spawnedDuring(d.log, 'ControllerExpandVolume', { volume_id: ids.v1! }), []);
    await N().call('NodeExpandVolume', { volume_id: ids.v1, volume_path: target(ids.v1!), staging_target_path: staging(ids.v1!), capacity_range: { required_bytes: 3 * GiB } });
    const fs = statfsSync(target(ids.v1!));
    assert.ok(fs.blocks * fs.bsize > 2.5 * GiB, `filesystem grown (${fs.blocks * fs.bsize})`);
    const stats = await N().call('NodeGetVolumeStats', { volume_id: ids.v1, volume_path: target(ids.v1!) });
    assert.ok(stats.usage.some((u: any) => u.unit === 'BYTES' && Number(u.total) > 2.5 * GiB));
    assert.match(stats.volume_condition.message, /maps \d+ bytes/);
  });

  it('serves raw block volumes', async () => {
    const v4 = await createVol('block-1', 64 * MiB, blockCap());
    ids.v4 = v4.volume_id;
    await stageAndPublish(ids.v4!, blockCap());
    const fd = openSync(target(ids.v4!), 'r+');
    const data = Buffer.alloc(4096, 7);
    writeSync(fd, data, 0, data.length, MiB);
    fsyncSync(fd);
    const back = Buffer.alloc(4096);
    readSync(fd, back, 0, back.length, MiB);
    closeSync(fd);
    assert.deepEqual(back, data);
    // A block volume's stats are its size, read from sysfs: no blockdev process.
    const stats = await N().call('NodeGetVolumeStats', { volume_id: ids.v4, volume_path: target(ids.v4!) });
    assert.deepEqual(stats.usage.map((u: any) => [u.unit, Number(u.total)]), [['BYTES', 64 * MiB]]);
    assert.deepEqual(spawnedAnyDuring(d.log, 'NodeGetVolumeStats', { volume_id: ids.v4! }), []);
    await teardown(ids.v4!);
  });

  it('runs xfs, and restores an xfs snapshot beside its mounted origin', async () => {
    const x = await createVol('xfs-1', 512 * MiB, mountCap('xfs'));
    await stageAndPublish(x.volume_id, mountCap('xfs'));
    writeFileSync(`${target(x.volume_id)}/x.txt`, 'xfs data\n');
    sh('sync', []);
    const s = await C().call('CreateSnapshot', { name: 'xfs-snap', source_volume_id: x.volume_id });
    const r = await createVol('xfs-restored', 512 * MiB, mountCap('xfs'), { snapshot: { snapshot_id: s.snapshot.snapshot_id } });
    await stageAndPublish(r.volume_id, mountCap('xfs'));
    assert.equal(readFileSync(`${target(r.volume_id)}/x.txt`, 'utf8'), 'xfs data\n');
    for (const id of [r.volume_id, x.volume_id]) {
      await teardown(id);
      await C().call('DeleteVolume', { volume_id: id });
    }
    await C().call('DeleteSnapshot', { snapshot_id: s.snapshot.snapshot_id });
    // Recorded inactive: the delete message went first, with no `dmsetup info` before it. The
    // transaction stamp follows the reply, so it may or may not fall inside the RPC's lines.
    for (const [rpc, id] of [['DeleteVolume', { volume_id: x.volume_id }], ['DeleteSnapshot', { snapshot_id: s.snapshot.snapshot_id }]] as const) {
      const cmds = commandsDuring(d.log, rpc, id).filter((c) => !c.includes('set_transaction_id'));
      assert.deepEqual(cmds.map((c) => c.split(' ').slice(0, 4).join(' ').replace(/ \S+ 0 /, ' POOL 0 ')), ['message POOL 0 delete'], cmds.join('\n'));
    }
  });

  it('lists volumes and snapshots with pagination', async () => {
    const page1 = await C().call('ListVolumes', { max_entries: 2 });
    assert.equal(page1.entries.length, 2);
    assert.ok(page1.next_token);
    const page2 = await C().call('ListVolumes', { max_entries: 2, starting_token: page1.next_token });
    const all = [...page1.entries, ...page2.entries].map((e: any) => e.volume.volume_id).sort();
    assert.deepEqual(all, [ids.v1, ids.v2, ids.v3, ids.v4].sort());
    const snaps = await C().call('ListSnapshots', { source_volume_id: ids.v1 });
    assert.deepEqual(snaps.entries.map((e: any) => e.snapshot.snapshot_id), [ids.s1]);
    const got = await C().call('ControllerGetVolume', { volume_id: ids.v1 });
    assert.equal(got.status.volume_condition.abnormal, false);
    const valid = await C().call('ValidateVolumeCapabilities', { volume_id: ids.v1, volume_capabilities: [mountCap()] });
    assert.ok(valid.confirmed);
  });

  it('shows the pool and volumes in /metrics, status and doctor', async () => {
    const text = await (await fetch(`http://${METRICS}/metrics`)).text();
    const total = /dmthin_csi_pool_data_size_bytes\{pool="[^"]+"\} (\d+)/.exec(text);
    assert.ok(total && Number(total[1]) > 10 * GiB, 'pool data size exported');
    assert.match(text, /dmthin_csi_rpc_duration_seconds_count\{method="CreateVolume",code="OK"\} [1-9]/);
    assert.match(text, /dmthin_csi_snapshot_suspend_seconds_count [1-9]/);
    assert.match(text, /dmthin_csi_dm_command_duration_seconds_count\{op="create_thin",outcome="ok"\} [1-9]/);
    const cli = (args: string[]) => spawnSync(process.execPath, [`${ROOT}/dist/dmthin-csi.mjs`, ...args], { encoding: 'utf8' });
    const status = cli(['status', '--state-dir', STATE, '--pool-name', POOL]);
    assert.equal(status.status, 0, status.stderr);
    for (const id of [ids.v1!, ids.v2!, ids.s1!]) assert.ok(status.stdout.includes(id), `status lists ${id}:\n${status.stdout}`);
    assert.match(status.stdout, /Activated/);
    console.log(status.stdout);
    const doctor = cli(['doctor', '--pool-name', POOL]);
    assert.equal(doctor.status, 0, `${doctor.stdout}\n${doctor.stderr}`);
    console.log(doctor.stdout);
  });

  it('survives a restart with volumes mounted', async () => {
    await stopDriver(d);
    d = await startDriver(['--metrics-address', METRICS, '--log-level', 'debug']);
    assert.equal(readFileSync(`${target(ids.v1!)}/hello.txt`, 'utf8'), 'hello from the first volume\n');
    assertTxSettled();
  });

  it('finds a device deleted behind its back (Faulty) and an inactive stray thin (orphan) at restart', async () => {
    const gone = (await C().call('CreateVolume', { name: 'vanishing', capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [mountCap()] })).volume.volume_id;
    const goneId = records().find((r) => r.id === gone)!.deviceId;
    await stopDriver(d);
    sh('dmsetup', ['message', POOL, '0', `delete ${goneId}`]);
    sh('dmsetup', ['message', POOL, '0', 'create_thin 4242']);
    d = await startDriver(['--metrics-address', METRICS, '--log-level', 'debug']);
    await metadataChecked(d.log); // the start settles records only; the metadata check follows it
    const rec = records().find((r) => r.id === gone)!;
    assert.equal(rec.state, 'Faulty');
    assert.match(rec.error ?? '', new RegExp(`thin device ${goneId} is not in the metadata of pool ${POOL}`));
    assert.match(readFileSync(d.log, 'utf8'), /"deviceId":4242,.*"thin device in pool has no record"|"thin device in pool has no record".*"deviceId":4242/);
    assert.equal(sh('dmsetup', ['status', POOL]).trim().split(/\s+/)[6], '-', 'the metadata snapshot was released');
    await C().call('DeleteVolume', { volume_id: gone }); // a vanished device can still be deleted
    sh('dmsetup', ['message', POOL, '0', 'delete 4242']);
    assert.equal(records().some((r) => r.id === gone), false);
  });

  it('tears everything down and leaves nothing behind', async () => {
    for (const id of [ids.v1!, ids.v2!, ids.v3!]) await teardown(id);
    // Unpublish, unstage and delete start no process at all: unmounts and dm calls are in process.
    for (const rpc of ['NodeUnpublishVolume', 'NodeUnstageVolume']) assert.deepEqual(spawnedAnyDuring(d.log, rpc, { volume_id: ids.v2! }), [], rpc);
    await teardown(ids.v1!); // unstaging twice is fine
    for (const id of [ids.v1, ids.v2, ids.v3, ids.v4]) await C().call('DeleteVolume', { volume_id: id });
    assert.deepEqual(spawnedAnyDuring(d.log, 'DeleteVolume', { volume_id: ids.v2! }), []);
    await C().call('DeleteVolume', { volume_id: ids.v1 });
    await C().call('DeleteSnapshot', { snapshot_id: ids.s1 });
    await C().call('DeleteSnapshot', { snapshot_id: ids.s1 });
    assert.equal((await C().call('ListVolumes', {})).entries.length, 0);
    assert.deepEqual(records(), []);
    assert.deepEqual(liveThins(), []);
    assert.deepEqual(poolThinIds(), []);
    assertTxSettled();
  });
});

/**
 * The device-mapper requests the driver made (debug log: its in-process ioctls, in dmsetup's
 * words) while it served the first call of RPC whose request has the fields of `request`.
 */
function commandsDuring(log: string, rpc: string, request: Record<string, string> = {}): string[] {
  return logged(log, rpc, request, (c) => c === 'dm-ioctl');
}

/** The dmsetup commands the driver spawned meanwhile: none, on the hot path. */
function spawnedDuring(log: string, rpc: string, request: Record<string, string> = {}): string[] {
  return logged(log, rpc, request, (c) => c === 'dmsetup');
}

/** In process: the dm ioctls and mount(2)/umount2(2), logged in their commands' words. */
const IN_PROCESS = new Set(['dm-ioctl', 'mount(2)', 'umount2(2)']);

/**
 * Every process the driver started meanwhile, "command args". thin_ls is left out: it is the
 * periodic metadata pass, which runs on its own timer and may fall inside any RPC's window.
 */
function spawnedAnyDuring(log: string, rpc: string, request: Record<string, string> = {}): string[] {
  return logged(log, rpc, request, (c) => !IN_PROCESS.has(c) && c !== 'thin_ls', true);
}

function logged(log: string, rpc: string, request: Record<string, string>, which: (command: string) => boolean, named = false): string[] {
  const out: string[] = [];
  let inside = false;
  const wanted = (req: Record<string, unknown> = {}) => Object.entries(request).every(([k, v]) => req[k] === v);
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as { message?: string; rpc?: string; command?: string; args?: string; request?: Record<string, unknown> };
    if (e.message === 'rpc request' && e.rpc === rpc && wanted(e.request)) inside = true;
    else if (inside && e.message === 'rpc' && e.rpc === rpc) return out;
    else if (inside && e.message === 'command' && which(e.command ?? '')) out.push(named ? `${e.command} ${e.args ?? ''}` : e.args ?? '');
  }
  throw new Error(`no complete ${rpc} in ${log}`);
}

/** Waits for the driver's first reconcile that compared the records with the pool metadata. */
async function metadataChecked(log: string): Promise<void> {
  const done = /"metadata":"checked".*"pool reconciled"|"pool reconciled".*"metadata":"checked"/;
  for (const t0 = Date.now(); Date.now() - t0 < 120_000;) {
    if (done.test(readFileSync(log, 'utf8'))) return;
    await sleep(100);
  }
  throw new Error('no reconcile with the pool metadata within 120 s');
}
