/**
 * The two Mounter implementations on the real kernel: the same sequence through the mount and
 * umount commands (SystemMounter) and through mount(2)/umount2(2) in process (KernelMounter),
 * each on its own loop device and targets, with the mount table's line for each target (the
 * independent observer) compared between the two after every step, and each failure's errno.
 * Then what only the in-process path has: a mount that cannot finish until the event loop has
 * run (its device suspended; the resume comes from a timer), and a deadline that passes.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { KernelMounter } from '../../src/mount/kernel.ts';
import { parseMountinfo } from '../../src/mount/mountinfo.ts';
import { SystemMounter } from '../../src/mount/system.ts';
import { devNo } from '../../src/system/blockdev.ts';
import { type FsType, type Mounter, MountError } from '../../src/mount/types.ts';
import { background as ctx } from '../../src/system/context.ts';
import { sh } from './harness.ts';
import { sleep } from '../../src/system/delay.ts';

const DIR = '/var/lib/dmthin-rk-mount';

interface Side { tag: string; m: Mounter; dev: string; dir: string }

function side(tag: string, fs: FsType, m: Mounter): Side {
  const img = `${DIR}/${fs}-${tag}.img`;
  sh('truncate', ['-s', fs === 'xfs' ? '320M' : '64M', img]);
  const dev = sh('losetup', ['-f', '--show', img]).trim();
  if (fs === 'ext4') sh('mkfs.ext4', ['-q', '-F', dev]);
  else sh('mkfs.xfs', ['-q', '-f', dev]);
  const dir = `${DIR}/${fs}-${tag}`;
  for (const d of ['a', 'b', 'c', 'd']) mkdirSync(`${dir}/${d}`, { recursive: true });
  writeFileSync(`${dir}/blk`, '');
  return { tag, m, dev, dir };
}

/** The mount table's visible line at `target`, with what differs between the sides by construction made neutral. */
function observe(s: Side, target: string): string {
  const lines = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((r) => r.target === target);
  const r = lines.at(-1);
  if (!r) return 'not mounted';
  const own = devNo(statSync(s.dev, { bigint: true }).rdev);
  const loop = s.dev.replace('/dev/', '');
  return [
    r.majorMinor === own ? 'DEV' : r.majorMinor, r.root.replace(loop, 'LOOP'), r.options.join(','),
    r.optionalFields.map((f) => f.replace(/\d+/, 'N')).join(' '), r.fsType, r.source.replace(s.dev, 'DEV'), r.superOptions.join(','),
  ].join(' ');
}

/** What a call answered: ok, or its error's class and errno. */
async function answer(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof MountError ? `MountError ${err.errno}` : `${(err as Error).name}: ${(err as Error).message}`;
  }
}

function writes(path: string): string {
  try {
    writeFileSync(path, 'x');
    return 'written';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

function compareSequence(fs: FsType): void {
  describe(`${fs}: mount(8) and mount(2) leave the same mount table`, () => {
    let sides: Side[] = [];
    before(() => {
      mkdirSync(DIR, { recursive: true });
      sides = [side('cmd', fs, new SystemMounter()), side('sys', fs, new KernelMounter())];
    });
    after(() => {
      for (const s of sides) {
        for (const t of ['blk', 'd', 'c', 'b', 'a']) sh('sh', ['-c', `umount ${s.dir}/${t} 2>/dev/null; true`]);
        sh('losetup', ['-d', s.dev]);
      }
    });

    /** One step on both sides: the same answer, the same lines at the targets. */
    async function both(step: (s: Side) => Promise<unknown>, targets: string[]): Promise<string[]> {
      const seen: string[][] = [];
      for (const s of sides) {
        const got = await answer(step(s));
        seen.push([got, ...targets.map((t) => observe(s, `${s.dir}/${t}`))]);
      }
      assert.deepEqual(seen[1], seen[0], `${sides[1]!.tag} against ${sides[0]!.tag}`);
      return seen[0]!;
    }

    const data = fs === 'xfs' ? ['nouuid'] : ['errors=remount-ro', 'data=ordered'];
    it('a read-only mount, and its unmount', async () => {
      const [got, line] = await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/b`, fs, ['ro', ...data]), ['b']);
      assert.equal(got, 'ok');
      assert.match(line!, /^DEV \/ ro[, ]/);
      assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/b`), ['b']))[1], 'not mounted');
    });
    it('propagation words, each its own call after the mount: private, then shared', async () => {
      const [got, line] = await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/b`, fs, ['ro', 'private', ...data]), ['b']);
      assert.equal(got, 'ok');
      assert.doesNotMatch(line!, /shared:/, line);
      assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/b`), ['b']))[1], 'not mounted');
      const [again, shared] = await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/b`, fs, ['ro', 'shared', ...data]), ['b']);
      assert.equal(again, 'ok');
      assert.match(shared!, / shared:N /, shared);
      assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/b`), ['b']))[1], 'not mounted');
    });
    it('mount with flags and data', async () => {
      const [got, line] = await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/a`, fs, ['noatime', 'nodev', ...data, 'nofail']), ['a']);
      assert.equal(got, 'ok');
      assert.match(line!, /^DEV \/ rw,nodev,noatime /);
    });
    it('a read-only mount of a filesystem mounted read-write, or a second mount at the same point, is EBUSY', async () => {
      assert.equal((await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/b`, fs, ['ro', ...data]), ['b', 'a']))[0], 'MountError EBUSY');
      assert.equal((await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/a`, fs, ['noatime', 'nodev', ...data]), ['a']))[0], 'MountError EBUSY');
    });
    it('a bind, then a read-only bind on which writes fail with EROFS', async () => {
      assert.equal((await both((s) => s.m.bindMount(ctx, `${s.dir}/a`, `${s.dir}/c`, []), ['c']))[0], 'ok');
      const [got, line] = await both((s) => s.m.bindMount(ctx, `${s.dir}/a`, `${s.dir}/d`, ['ro', 'nosuid']), ['d', 'c', 'a']);
      assert.equal(got, 'ok');
      assert.match(line!, /^DEV \/ ro,nosuid,nodev,noatime /, 'the bind keeps the flags it had and adds the asked ones');
      for (const s of sides) {
        assert.equal(writes(`${s.dir}/d/f`), 'EROFS');
        assert.equal(writes(`${s.dir}/a/f`), 'written');
      }
    });
    it('a block device bound onto a file, read-only', async () => {
      const [got, line] = await both((s) => s.m.bindMount(ctx, s.dev, `${s.dir}/blk`, ['ro']), ['blk']);
      assert.equal(got, 'ok');
      assert.match(line!, /^\d+:\d+ \/LOOP ro,/);
    });
    it('unmounts, each leaving the others', async () => {
      for (const t of ['blk', 'd', 'c']) {
        assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/${t}`), [t, 'a']))[0], 'ok');
      }
      assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/a`), ['a']))[1], 'not mounted');
    });
    it('a block device\'s size: blockdev(8) and sysfs agree; a missing node is ENOENT, a directory ENOTBLK', async () => {
      const sizes = await Promise.all(sides.map((s) => s.m.blockSize(ctx, s.dev)));
      assert.equal(sizes[1], sizes[0]);
      assert.equal(sizes[0], statSync(`${DIR}/${fs}-cmd.img`).size);
      assert.equal(await answer(sides[1]!.m.blockSize(ctx, `${DIR}/no-such-node`)), 'MountError ENOENT');
      assert.equal(await answer(sides[1]!.m.blockSize(ctx, sides[1]!.dir)), 'MountError ENOTBLK');
    });
    it('failures: not mounted is EINVAL, a missing mount point ENOENT, the wrong type EINVAL', async () => {
      assert.equal((await both((s) => s.m.unmount(ctx, `${s.dir}/a`), ['a']))[0], 'MountError EINVAL');
      // umount(8) looks the path up in its table and gives up before any syscall ("no mount point
      // specified", read as EINVAL); umount2(2) says what the kernel says of a missing path.
      assert.deepEqual(await Promise.all(sides.map((s) => answer(s.m.unmount(ctx, `${s.dir}/nowhere`)))), ['MountError EINVAL', 'MountError ENOENT']);
      assert.equal((await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/nowhere`, fs, []), []))[0], 'MountError ENOENT');
      const other = fs === 'xfs' ? 'ext4' : 'xfs';
      assert.equal((await both((s) => s.m.mount(ctx, s.dev, `${s.dir}/a`, other, []), ['a']))[0], 'MountError EINVAL');
    });
  });
}

compareSequence('ext4');
compareSequence('xfs');

describe('mount(2) runs off the event loop, within the deadline', { skip: !existsSync('/dev/mapper/control') && 'no device-mapper here' }, () => {
  const name = 'dmthin-rk-mount-slow';
  let loop = '';
  const dev = `/dev/mapper/${name}`;
  const target = `${DIR}/slow`;
  before(() => {
    mkdirSync(target, { recursive: true });
    sh('truncate', ['-s', '64M', `${DIR}/slow.img`]);
    loop = sh('losetup', ['-f', '--show', `${DIR}/slow.img`]).trim();
    sh('mkfs.ext4', ['-q', '-F', loop]);
    const sectors = sh('blockdev', ['--getsz', loop]).trim();
    sh('dmsetup', ['create', name, '--table', `0 ${sectors} linear ${loop} 0`]);
  });
  /**
   * Without --nolockfs a suspend freezes the block device, and a mount of a frozen device is
   * EBUSY at once; the device's page cache is dropped so the superblock read must reach it.
   */
  const suspend = (): void => {
    sh('blockdev', ['--flushbufs', dev]);
    sh('dmsetup', ['suspend', '--nolockfs', name]);
  };
  after(() => {
    sh('sh', ['-c', `dmsetup resume ${name}; umount ${target} 2>/dev/null; dmsetup remove ${name}; losetup -d ${loop}; true`]);
  });

  it('a mount whose reads wait on a suspended device completes once a timer resumes it', async () => {
    const m = new KernelMounter();
    suspend();
    let settled = false;
    const mounting = m.mount(ctx, dev, target, 'ext4', []).finally(() => { settled = true; });
    // Its superblock read is queued until the resume, which only this thread can send.
    await new Promise<void>((resolve) => setTimeout(() => {
      assert.equal(settled, false, 'the mount cannot have finished on a suspended device');
      sh('dmsetup', ['resume', name]);
      resolve();
    }, 500));
    await mounting;
    assert.match(observe({ tag: 'x', m, dev, dir: DIR }, target), / ext4 /);
    await m.unmount(ctx, target);
  });
  it('past the deadline the caller hears ETIMEDOUT; the mount itself finishes behind it', async () => {
    const m = new KernelMounter();
    suspend();
    const got = await answer(m.mount({ deadline: Date.now() + 1000 }, dev, target, 'ext4', []));
    sh('dmsetup', ['resume', name]);
    assert.equal(got, 'MountError ETIMEDOUT');
    for (let i = 0; i < 100 && observe({ tag: 'x', m, dev, dir: DIR }, target) === 'not mounted'; i++) await sleep(100);
    assert.match(observe({ tag: 'x', m, dev, dir: DIR }, target), / ext4 /, 'the syscall was not taken back');
    await m.unmount(ctx, target);
  });
});

after(() => rmSync(DIR, { recursive: true, force: true }));
