/**
 * The two DeviceMapper implementations on the real kernel: the same operation sequence through
 * dmsetup and through the in-process ioctls, each on its own pool, with what `dmsetup` (the
 * independent observer) shows after each step compared between the two, and what each
 * implementation answered compared too. Then what only the ioctl path has: a listing past its
 * first buffer (DM_BUFFER_FULL_FLAG), /dev/mapper nodes without udev, udev's fallback.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { DmsetupDeviceMapper } from '../../src/devmapper/dmsetup.ts';
import { IoctlDeviceMapper } from '../../src/devmapper/ioctl/device-mapper.ts';
import { devNo } from '../../src/system/blockdev.ts';
import { type DeviceMapper, DmError } from '../../src/devmapper/types.ts';
import { background as ctx } from '../../src/system/context.ts';
import { sh } from './harness.ts';

const DIR = '/var/lib/dmthin-rk-dm-ioctl';
const GiBs = 2 * 1024 * 1024;

interface Side { tag: string; dm: DeviceMapper; loops: string[] }

function loop(file: string, size: string): string {
  sh('truncate', ['-s', size, file]);
  return sh('losetup', ['-f', '--show', file]).trim();
}

function side(tag: string, dm: DeviceMapper): Side {
  const meta = loop(`${DIR}/${tag}-meta.img`, '64M');
  const data = loop(`${DIR}/${tag}-data.img`, '4G');
  sh('dd', ['if=/dev/zero', `of=${meta}`, 'bs=4096', 'count=1', 'status=none']);
  return { tag, dm, loops: [meta, data] };
}

/**
 * What dmsetup shows of one side's devices (three dmsetup runs for all of them), with its names
 * and device numbers made neutral, and whether each has its /dev/mapper block node.
 */
function observe(s: Side): string {
  const prefix = `${s.tag}-`;
  const ours = (text: string) => text.split('\n').filter((l) => l.startsWith(prefix)).sort();
  const numbers = new Map<string, string>();
  const neutral = (text: string): string => text
    .replaceAll(prefix, 'X-')
    .replace(/\b\d+:\d+\b/g, (dev) => { if (!numbers.has(dev)) numbers.set(dev, `dev${numbers.size}`); return numbers.get(dev)!; });
  const info = ours(sh('dmsetup', ['info', '-c', '--noheadings', '--separator', '|', '-o', 'name,attr,open,segments,uuid']));
  const tables = ours(sh('dmsetup', ['table']));
  const status = ours(sh('dmsetup', ['status']));
  const nodes = readdirSync('/dev/mapper').filter((n) => n.startsWith(prefix)).sort()
    .map((n) => `${n} ${statSync(`/dev/mapper/${n}`).isBlockDevice() ? 'node' : 'not-a-node'}`);
  return neutral([...info, ...tables, ...status, ...nodes].join('\n'));
}

/** One step's answer, neutral as observe(): an error's kind, or the value without device numbers. */
async function answer(s: Side, fn: () => Promise<unknown>): Promise<string> {
  try {
    const v = await fn();
    return JSON.stringify(v, (k, x) => (k === 'major' || k === 'minor' || k === 'events' ? undefined : x instanceof Map ? Object.fromEntries(x) : x))
      ?.replaceAll(`${s.tag}-`, 'X-').replace(/\b\d+:\d+\b/g, 'dev') ?? 'undefined';
  } catch (err) {
    if (err instanceof DmError) return `DmError ${err.kind}`;
    throw err;
  }
}

/** The sequence, step by step: [label, action]. Both sides run exactly this. */
function steps(s: Side): Array<[string, () => Promise<unknown>]> {
  const pool = `${s.tag}-pool`;
  const thin = `${s.tag}-thin`;
  const snap = `${s.tag}-snap`;
  const [meta, data] = s.loops as [string, string];
  const thinTable = (id: number, sectors: number) => `0 ${sectors} thin /dev/mapper/${pool} ${id}`;
  return [
    ['targets', async () => (await s.dm.targets(ctx)).includes('thin-pool')],
    ['create pool', () => s.dm.create(ctx, pool, `0 ${4 * GiBs} thin-pool ${meta} ${data} 128 0 1 skip_block_zeroing`)],
    ['pool status', () => s.dm.poolStatus(ctx, pool)],
    ['pool table', async () => (await s.dm.poolTable(ctx, pool)).dataBlockSectors],
    ['create_thin 0', () => s.dm.message(ctx, pool, 'create_thin 0')],
    ['create_thin 0 again', () => s.dm.message(ctx, pool, 'create_thin 0')],
    ['activate thin', () => s.dm.create(ctx, thin, thinTable(0, GiBs), { uuid: `${s.tag}-uuid-thin` })],
    ['create thin again', () => s.dm.create(ctx, thin, thinTable(0, GiBs))],
    ['write', async () => { sh('dd', ['if=/dev/urandom', `of=/dev/mapper/${thin}`, 'bs=64k', 'count=16', 'oflag=direct', 'status=none']); }],
    ['suspend thin', () => s.dm.suspend(ctx, thin)],
    ['create_snap 1 0', () => s.dm.message(ctx, pool, 'create_snap 1 0')],
    ['resume thin', () => s.dm.resume(ctx, thin)],
    ['activate snap ro', () => s.dm.create(ctx, snap, thinTable(1, GiBs), { readOnly: true })],
    ['info snap', () => s.dm.info(ctx, snap)],
    ['thin status', () => s.dm.thinStatus(ctx, thin)],
    ['thin table', () => s.dm.thinTable(ctx, thin)],
    ['live sectors', () => s.dm.liveThinSectors(ctx, thin)],
    ['reload bigger', () => s.dm.reload(ctx, thin, thinTable(0, 2 * GiBs))],
    ['info inactive', () => s.dm.info(ctx, thin)],
    ['suspend noflush', () => s.dm.suspend(ctx, thin, { noFlush: true })],
    ['resume to swap', () => s.dm.resume(ctx, thin)],
    ['thin statuses', async () => [...(await s.dm.thinStatusAll(ctx))].filter(([n]) => n.startsWith(s.tag)).sort()],
    ['thin tables', async () => [...(await s.dm.thinTableAll(ctx))].filter(([n]) => n.startsWith(s.tag)).sort()],
    ['info all', async () => (await s.dm.infoAll(ctx)).filter((i) => i.name.startsWith(s.tag)).sort((a, b) => a.name.localeCompare(b.name))],
    ['thin ids', () => s.dm.thinIds(ctx, pool)],
    ['remove snap', () => s.dm.remove(ctx, snap, { retry: true })],
    ['info gone', () => s.dm.info(ctx, snap)],
    ['remove gone', () => s.dm.remove(ctx, snap)],
    ['is live gone', () => s.dm.isLive(ctx, snap)],
    ['delete 1', () => s.dm.message(ctx, pool, 'delete 1')],
    ['delete 1 again', () => s.dm.message(ctx, pool, 'delete 1')],
    ['bad message', () => s.dm.message(ctx, pool, 'no_such_message 3')],
    ['status of missing', () => s.dm.thinStatus(ctx, `${s.tag}-missing`)],
    ['table of missing', () => s.dm.thinTable(ctx, `${s.tag}-missing`)],
    ['remove thin', () => s.dm.remove(ctx, thin, { retry: true })],
    ['delete 0', () => s.dm.message(ctx, pool, 'delete 0')],
    ['pool status end', () => s.dm.poolStatus(ctx, pool)],
  ];
}

describe('DeviceMapper over ioctls against dmsetup on the real kernel', () => {
  let a: Side;
  let b: Side;
  before(() => {
    rmSync(DIR, { recursive: true, force: true });
    mkdirSync(DIR, { recursive: true });
    a = side('rkd', new DmsetupDeviceMapper({ udev: false }));
    b = side('rki', new IoctlDeviceMapper({ udev: false }));
  });
  after(async () => {
    for (const s of [a, b]) {
      for (const n of ['snap', 'thin', 'pool']) await s?.dm.remove(ctx, `${s.tag}-${n}`).catch(() => undefined);
      for (const l of s?.loops ?? []) sh('losetup', ['-d', l]);
    }
  });

  it('answers and leaves the kernel as dmsetup does, after every step', async () => {
    const sa = steps(a);
    const sb = steps(b);
    for (let i = 0; i < sa.length; i++) {
      const [label, runA] = sa[i]!;
      const gotA = await answer(a, runA);
      const gotB = await answer(b, sb[i]![1]);
      assert.equal(gotB, gotA, `${label}: the ioctl implementation answered as dmsetup's`);
      assert.equal(observe(b), observe(a), `${label}: dmsetup shows the same kernel state`);
    }
    assert.equal(observe(b).split('\n').filter((l) => !l.startsWith('X-pool')).join('\n'), '', 'nothing is left but the pool');
  });
});

describe('IoctlDeviceMapper on its own', () => {
  const dm = new IoctlDeviceMapper({ udev: false });
  const long = (i: number) => `rki-list-${String(i).padStart(4, '0')}-${'n'.repeat(100)}`;

  it('lists past its first buffer: the kernel says DM_BUFFER_FULL_FLAG and the call is made again, larger', async () => {
    // 160 names of 115 bytes need ~25 KiB of dm_name_list, past the first 16 KiB. ('error': the
    // guest has no dm-zero module.)
    for (let i = 0; i < 160; i++) await dm.create(ctx, long(i), '0 8 error');
    try {
      const names = new Set((await dm.infoAll(ctx)).map((d) => d.name));
      for (let i = 0; i < 160; i++) assert.ok(names.has(long(i)), `${long(i)} listed`);
      assert.equal(sh('dmsetup', ['ls']).split('\n').filter((l) => l.startsWith('rki-list-')).length, 160);
    } finally {
      for (let i = 0; i < 160; i++) await dm.remove(ctx, long(i));
    }
    assert.equal(sh('dmsetup', ['ls']).split('\n').filter((l) => l.startsWith('rki-list-')).length, 0);
  });

  it('makes /dev/mapper/NAME a block node of the device without udev and removes it with the device', async () => {
    await dm.create(ctx, 'rki-node', '0 8 error');
    const info = await dm.info(ctx, 'rki-node');
    const st = statSync('/dev/mapper/rki-node', { bigint: true });
    assert.ok(st.isBlockDevice());
    assert.equal(devNo(st.rdev), `${info!.major}:${info!.minor}`);
    await dm.remove(ctx, 'rki-node');
    assert.equal(existsSync('/dev/mapper/rki-node'), false);
  });

  it('with udev expected but silent, waits for its node and then makes it (libdevmapper fallback)', async () => {
    const udev = new IoctlDeviceMapper({ udev: true, udevWaitMs: 200 });
    await udev.create(ctx, 'rki-udev', '0 8 error');
    assert.ok(lstatSync('/dev/mapper/rki-udev').isBlockDevice());
    await udev.remove(ctx, 'rki-udev');
    assert.equal(existsSync('/dev/mapper/rki-udev'), false);
  });

  it('leaves a file under the name that is not this device alone on remove', async () => {
    await dm.create(ctx, 'rki-other', '0 8 error');
    rmSync('/dev/mapper/rki-other');
    sh('mknod', ['/dev/mapper/rki-other', 'b', '7', '200']);
    await dm.remove(ctx, 'rki-other');
    assert.ok(existsSync('/dev/mapper/rki-other'), 'someone else\'s node stays');
    rmSync('/dev/mapper/rki-other');
  });

  it('undoes a create whose table the kernel refuses: no device is left', async () => {
    await assert.rejects(dm.create(ctx, 'rki-bad', '0 8 thin /dev/nonexistent 0'), (e: unknown) => e instanceof DmError);
    assert.equal(await dm.info(ctx, 'rki-bad'), undefined);
  });
});
