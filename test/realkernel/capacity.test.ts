/**
 * Capacity that exists (issue 24), on the real kernel. A file pool whose sparse data file (512 MiB)
 * is larger than the filesystem under it (a 192 MiB tmpfs): GetCapacity never offers more than
 * the filesystem holds, admission refuses beforehand, and when writers fill the filesystem anyway
 * (thin volumes are promised, not reserved) their writes fail while the pool stays read-write,
 * without needs_check, its metadata file allocated in full, and fsynced data reads back. Then a
 * pool out of data space with writes queued in it: CreateSnapshot is refused at once, before any
 * suspend, where it used to freeze the origin for its whole deadline.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../../src/system/delay.ts';
import { blockCap, codeOf, MiB } from '../support/csi-client.ts';
import type { DeviceRecord } from '../../src/state/types.ts';
import { KUBELET, POOL, sh, startDriver, STATE, stopDriver, tail, type DriverProcess } from './harness.ts';

const NO_SPACE_TIMEOUT = '/sys/module/dm_thin_pool/parameters/no_space_timeout';
const poolStatus = (pool: string) => sh('dmsetup', ['status', pool]);
const fsAvailable = (dir: string) => { const s = statfsSync(dir); return s.bavail * s.bsize; };

/** dd onto a device: `mb` MiB of a repeating pattern, direct and fsynced; its exit code. */
function writer(dev: string, mb: number, src = '/dev/zero'): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn('dd', [`if=${src}`, `of=${dev}`, 'bs=1M', `count=${mb}`, 'oflag=direct', 'conv=fsync', 'status=none'], { stdio: 'ignore' });
  return { child, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

async function until(what: string, ms: number, cond: () => boolean): Promise<void> {
  for (const t0 = Date.now(); !cond(); await sleep(100)) if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
}

async function stageBlock(d: DriverProcess, name: string, mb: number): Promise<string> {
  const vol = (await d.clients.controller.call('CreateVolume', { name, capacity_range: { required_bytes: mb * MiB }, volume_capabilities: [blockCap()] })).volume;
  await d.clients.node.call('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: `${KUBELET}/staging/${vol.volume_id}`, volume_capability: blockCap() });
  return vol.volume_id as string;
}
function records(state: string): DeviceRecord[] {
  const dir = join(state, 'store', 'devices');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as DeviceRecord);
}
const dmPath = (id: string, state = STATE) => `/dev/mapper/${records(state).find((r) => r.id === id)!.dmName}`;

describe('a file pool larger than the filesystem under it', { timeout: 300_000 }, () => {
  let d: DriverProcess;
  const capacity = async () => Number((await d.clients.controller.call('GetCapacity', {})).available_capacity);
  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(STATE, { recursive: true });
    mkdirSync(KUBELET, { recursive: true });
    sh('mount', ['-t', 'tmpfs', '-o', 'size=192m', 'tmpfs', STATE]);
    d = await startDriver(['--loop-data-size', '512Mi', '--loop-metadata-size', '16Mi', '--overprovision-ratio', '1']);
  });
  after(async () => {
    if (d && (await stopDriver(d)) !== 0) console.log(tail(d.log));
  });

  it('offers what the filesystem holds, refuses beforehand, and keeps the pool read-write and the data intact when the filesystem fills', async () => {
    const C = d.clients.controller;
    const meta = statSync(join(STATE, 'pool', 'metadata.img'));
    assert.equal(meta.blocks * 512, 16 * MiB, 'the metadata file is allocated in full');
    // The filesystem is read before GetCapacity: while it fills, the driver's reading can only be smaller.
    const avail = fsAvailable(STATE);
    const offered = await capacity();
    console.log(`GetCapacity ${offered / MiB} MiB, filesystem ${avail / MiB} MiB available, data file 512 MiB`);
    assert.ok(offered > 0 && offered <= avail, `${offered} offered, ${avail} available`);
    assert.equal(await codeOf(C.call('CreateVolume', { name: 'too-big', capacity_range: { required_bytes: 400 * MiB }, volume_capabilities: [blockCap()] })), 'RESOURCE_EXHAUSTED');

    // Two volumes, each within capacity when asked: thin volumes are promises, so together they can overfill it.
    const a = await stageBlock(d, 'cap-a', 100);
    const b = await stageBlock(d, 'cap-b', 150);
    writeFileSync(join(STATE, '..', 'cap-pattern'), Buffer.alloc(100 * MiB, 'dmthin-capacity '));
    assert.equal(await writer(dmPath(a), 100, join(STATE, '..', 'cap-pattern')).exited, 0, 'the first volume is written and fsynced');
    const availAfter = fsAvailable(STATE);
    const left = await capacity();
    assert.ok(left > 0 && left <= availAfter, `${left} offered, ${availAfter} available`);
    assert.equal(await codeOf(C.call('CreateVolume', { name: 'refused', capacity_range: { required_bytes: left + 16 * MiB }, volume_capabilities: [blockCap()] })), 'RESOURCE_EXHAUSTED');

    const w = writer(dmPath(b), 150);
    for (let ms = 0; w.child.exitCode === null && ms < 60_000; ms += 200) {
      const before = fsAvailable(STATE);
      const offeredNow = await capacity();
      assert.ok(offeredNow <= before, `capacity never above what the filesystem holds: ${offeredNow} offered, ${before} available`);
      await sleep(200);
    }
    const code = await w.exited;
    console.log(`second writer exited ${code}; filesystem ${fsAvailable(STATE) / MiB} MiB available; ${poolStatus(POOL).trim()}`);
    assert.notEqual(code, 0, 'the filesystem filled: the writer got an error');
    const st = poolStatus(POOL);
    assert.match(st, / rw /, 'the pool stays read-write');
    assert.doesNotMatch(st, /needs_check/);
    assert.equal(await capacity(), 0, 'nothing more is offered');
    assert.equal(await codeOf(C.call('CreateVolume', { name: 'late', capacity_range: { required_bytes: MiB }, volume_capabilities: [blockCap()] })), 'RESOURCE_EXHAUSTED');
    const t0 = Date.now();
    assert.equal(await codeOf(C.call('CreateSnapshot', { name: 'cap-snap', source_volume_id: a }, 30_000)), 'RESOURCE_EXHAUSTED');
    console.log(`CreateSnapshot on the full filesystem refused after ${Date.now() - t0} ms`);
    const back = sh('cmp', ['-n', String(100 * MiB), dmPath(a), join(STATE, '..', 'cap-pattern')]);
    assert.equal(back, '', 'fsynced data reads back');
  });
});

describe('a pool out of data space, writes queued in it', { timeout: 300_000 }, () => {
  const state = `${STATE}-full`;
  const pool = `${POOL}-full`;
  let d: DriverProcess;
  let savedTimeout = '';
  before(async () => {
    savedTimeout = readFileSync(NO_SPACE_TIMEOUT, 'utf8').trim();
    writeFileSync(NO_SPACE_TIMEOUT, '10'); // the queued writes fail within seconds once the test is done
    rmSync(state, { recursive: true, force: true });
    d = await startDriver(['--state-dir', state, '--pool-name', pool, '--loop-data-size', '64Mi', '--loop-metadata-size', '16Mi', '--overprovision-ratio', '4']);
  });
  after(async () => {
    if (savedTimeout) writeFileSync(NO_SPACE_TIMEOUT, savedTimeout);
    if (d && (await stopDriver(d)) !== 0) console.log(tail(d.log));
  });

  it('refuses CreateSnapshot and CreateVolumeGroupSnapshot at once, before any suspend, with RESOURCE_EXHAUSTED', async () => {
    const id = await stageBlock(d, 'full-vol', 128);
    const dev = dmPath(id, state);
    const dd = writer(dev, 128);
    await until('pool out of data space', 60_000, () => poolStatus(pool).includes('out_of_data_space'));
    const t0 = Date.now();
    const single = await codeOf(d.clients.controller.call('CreateSnapshot', { name: 'full-snap', source_volume_id: id }, 30_000));
    const t1 = Date.now();
    const group = await codeOf(d.clients.group.call('CreateVolumeGroupSnapshot', { name: 'full-group', source_volume_ids: [id] }, 30_000));
    const t2 = Date.now();
    console.log(`CreateSnapshot ${single} after ${t1 - t0} ms, CreateVolumeGroupSnapshot ${group} after ${t2 - t1} ms (deadline 30 s each)`);
    assert.equal(single, 'RESOURCE_EXHAUSTED');
    assert.equal(group, 'RESOURCE_EXHAUSTED');
    // Behaviour, not speed: an answer that waited for the kernel would come at no_space_timeout (10 s) or the deadline.
    assert.ok(t2 - t0 < 15_000, `answered in ${t2 - t0} ms: well before the 30 s deadline`);
    assert.equal(dd.child.exitCode, null, 'the writes were still queued when both were refused');
    const info = sh('dmsetup', ['info', '-c', '--noheadings', '-o', 'attr', dev.replace('/dev/mapper/', '')]).trim();
    assert.notEqual(info[2], 's', 'the origin was never left suspended');
    assert.deepEqual(records(state).filter((r) => r.kind === 'snapshot'), [], 'no snapshot record left behind');
    assert.notEqual(await dd.exited, 0, 'the queued writes failed at no_space_timeout');
  });
});
