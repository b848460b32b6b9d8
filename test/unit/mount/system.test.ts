import assert from 'node:assert/strict';
import { mkdtempSync, promises as fsp, readdirSync, readFileSync, rmSync, statSync, writeFileSync, statfsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { background } from '../../../src/system/context.ts';
import { LosetupLoopDevices } from '../../../src/mount/loop.ts';
import { mountOwner } from '../../../src/mount/ownership.ts';
import { e2fsprogsAtLeast, SystemMounter } from '../../../src/mount/system.ts';
import { devNo } from '../../../src/system/blockdev.ts';
import { MountError } from '../../../src/mount/types.ts';

const TOOLS = ['mount', 'umount', 'blkid', 'mkfs.ext4', 'mkfs.xfs', 'resize2fs', 'xfs_growfs', 'fsck.ext4', 'blockdev', 'losetup'];

/**
 * Each fake tool logs its argv (tab-separated) to calls.log and answers from files:
 * TOOL.stdout, TOOL.stderr, TOOL.exit (one exit code per line, per call; the last repeats),
 * TOOL.sleep (seconds to hang instead of answering).
 */
const SCRIPT = `#!/bin/bash
d="$(dirname "$0")"; n="$(basename "$0")"
{ printf '%s' "$n"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; } >> "$d/calls.log"
c=$(( $(cat "$d/$n.count" 2>/dev/null || echo 0) + 1 )); echo "$c" > "$d/$n.count"
# exec, so the timeout's SIGTERM reaches the sleeper itself rather than an orphan holding the pipes.
[ -f "$d/$n.sleep" ] && exec sleep "$(cat "$d/$n.sleep")"
[ -f "$d/$n.stdout" ] && cat "$d/$n.stdout"
[ -f "$d/$n.stderr" ] && cat "$d/$n.stderr" >&2
code=0
if [ -f "$d/$n.exit" ]; then code=$(sed -n "\${c}p" "$d/$n.exit"); [ -z "$code" ] && code=$(tail -n1 "$d/$n.exit"); fi
exit "$code"
`;

class FakeBin {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'fakebin-'));
  constructor() {
    for (const t of TOOLS) {
      writeFileSync(path.join(this.dir, t), SCRIPT);
      chmodSync(path.join(this.dir, t), 0o755);
    }
  }
  answer(tool: string, a: { stdout?: string; stderr?: string; exit?: number[]; sleep?: number }): void {
    if (a.stdout !== undefined) writeFileSync(path.join(this.dir, `${tool}.stdout`), a.stdout);
    if (a.stderr !== undefined) writeFileSync(path.join(this.dir, `${tool}.stderr`), a.stderr);
    if (a.exit !== undefined) writeFileSync(path.join(this.dir, `${tool}.exit`), a.exit.join('\n') + '\n');
    if (a.sleep !== undefined) writeFileSync(path.join(this.dir, `${tool}.sleep`), String(a.sleep));
  }
  calls(): string[][] {
    try {
      return readFileSync(path.join(this.dir, 'calls.log'), 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    } catch {
      return [];
    }
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, want: Partial<Pick<MountError, 'errno' | 'exitCode'>> & { stderr?: RegExp; message?: RegExp }): Promise<MountError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof MountError, `expected MountError, got ${String(err)}`);
  if ('errno' in want) assert.equal(err.errno, want.errno);
  if ('exitCode' in want) assert.equal(err.exitCode, want.exitCode);
  if (want.stderr) assert.match(err.stderr, want.stderr);
  if (want.message) assert.match(err.message, want.message);
  return err;
}

let bin: FakeBin;
let m: SystemMounter;
beforeEach(() => {
  bin = new FakeBin();
  m = new SystemMounter({ binDir: bin.dir });
});
afterEach(() => bin.cleanup());

describe('SystemMounter mount/bind/unmount argv', () => {
  it('mount passes -t and one -o list, and omits -o without options', async () => {
    await m.mount(background, '/dev/mapper/a', '/mnt/a', 'ext4', ['ro', 'noatime']);
    await m.mount(background, '/dev/mapper/b', '/mnt/b', 'xfs', []);
    assert.deepEqual(bin.calls(), [
      ['mount', '-t', 'ext4', '-o', 'ro,noatime', '/dev/mapper/a', '/mnt/a'],
      ['mount', '-t', 'xfs', '/dev/mapper/b', '/mnt/b'],
    ]);
  });

  it('mount failure keeps errno, exit code and stderr', async () => {
    bin.answer('mount', { exit: [32], stderr: 'mount: /mnt/a: mount(2) system call failed: No such file or directory.\n' });
    await rejectsWith(m.mount(background, '/dev/x', '/mnt/a', 'ext4', []), { errno: 'ENOENT', exitCode: 32, stderr: /system call failed/ });
  });

  it('libmount\'s own words for a failed mount(2) carry the errno it got', async () => {
    bin.answer('mount', { exit: [32, 32, 32], stderr: 'mount: /mnt/a: wrong fs type, bad option, bad superblock on /dev/loop0, missing codepage or helper program, or other error.\n' });
    await rejectsWith(m.mount(background, '/dev/x', '/mnt/a', 'xfs', []), { errno: 'EINVAL', exitCode: 32, stderr: /wrong fs type/ });
    bin.answer('mount', { exit: [32], stderr: 'mount: /mnt/b: mount point does not exist.\n' });
    await rejectsWith(m.mount(background, '/dev/x', '/mnt/b', 'ext4', []), { errno: 'ENOENT', exitCode: 32 });
    bin.answer('mount', { exit: [32], stderr: 'mount: /mnt/c: unknown filesystem type \'zfs\'.\n' });
    assert.equal((await rejectsWith(m.mount(background, '/dev/x', '/mnt/c', 'zfs', []), { exitCode: 32 })).errno, undefined);
  });

  it('a plain bind is a single mount --bind', async () => {
    await m.bindMount(background, '/src', '/dst', []);
    await m.bindMount(background, '/src', '/dst2', ['rw']);
    assert.deepEqual(bin.calls(), [['mount', '--bind', '/src', '/dst'], ['mount', '--bind', '/src', '/dst2']]);
  });

  it('a read-only bind is followed by remount,bind,ro on the target', async () => {
    await m.bindMount(background, '/src', '/dst', ['ro']);
    await m.bindMount(background, '/src', '/dst2', ['bind', 'ro', 'nosuid']);
    assert.deepEqual(bin.calls(), [
      ['mount', '--bind', '/src', '/dst'],
      ['mount', '-o', 'remount,bind,ro', '/dst'],
      ['mount', '--bind', '/src', '/dst2'],
      ['mount', '-o', 'remount,bind,ro,nosuid', '/dst2'],
    ]);
  });

  it('a failed ro remount undoes the bind rather than leave it writable', async () => {
    bin.answer('mount', { exit: [0, 1], stderr: 'mount: /dst: Permission denied.\n' });
    await rejectsWith(m.bindMount(background, '/src', '/dst', ['ro']), { errno: 'EACCES', exitCode: 1 });
    assert.deepEqual(bin.calls().at(-1), ['umount', '/dst']);
  });

  it('unmount runs umount TARGET; "not mounted" becomes EINVAL', async () => {
    await m.unmount(background, '/mnt/a');
    assert.deepEqual(bin.calls(), [['umount', '/mnt/a']]);
    bin.answer('umount', { exit: [32], stderr: 'umount: /mnt/a: not mounted.\n' });
    await rejectsWith(m.unmount(background, '/mnt/a'), { errno: 'EINVAL', exitCode: 32 });
  });

  it('a busy unmount keeps EBUSY', async () => {
    bin.answer('umount', { exit: [32], stderr: 'umount: /mnt/a: target is busy.\n' });
    const err = await rejectsWith(m.unmount(background, '/mnt/a'), { exitCode: 32 });
    assert.notEqual(err.errno, 'EINVAL');
  });
});

describe('SystemMounter detectFs', () => {
  let dev: string;
  beforeEach(() => {
    dev = path.join(bin.dir, 'disk.img');
    writeFileSync(dev, '');
  });

  it('returns the TYPE blkid prints', async () => {
    bin.answer('blkid', { stdout: 'xfs\n' });
    assert.equal(await m.detectFs(background, dev), 'xfs');
    assert.deepEqual(bin.calls(), [['blkid', '-p', '-s', 'TYPE', '-o', 'value', dev]]);
  });

  it('exit code 2 means no filesystem, whatever the text', async () => {
    bin.answer('blkid', { exit: [2], stderr: 'something odd\n' });
    assert.equal(await m.detectFs(background, dev), undefined);
  });

  it('other exit codes fail (8 = ambivalent probe)', async () => {
    bin.answer('blkid', { exit: [8], stderr: 'ambivalent result\n' });
    await rejectsWith(m.detectFs(background, dev), { exitCode: 8, stderr: /ambivalent/ });
  });

  it('success without a TYPE refuses to call the device empty', async () => {
    bin.answer('blkid', { stdout: '' });
    await rejectsWith(m.detectFs(background, dev), { message: /no filesystem TYPE/ });
  });

  it('a missing device is ENOENT, not "no filesystem" (blkid would exit 2 for it too)', async () => {
    bin.answer('blkid', { exit: [2] });
    await rejectsWith(m.detectFs(background, path.join(bin.dir, 'nope')), { errno: 'ENOENT' });
    assert.deepEqual(bin.calls(), []);
  });
});

describe('SystemMounter probe', () => {
  it('reads the superblock: nothing on zeros, ENOENT for a missing device, no tool run', async () => {
    const img = path.join(bin.dir, 'zeros.img');
    writeFileSync(img, Buffer.alloc(8192));
    assert.equal(await m.probe(background, img), undefined);
    await rejectsWith(m.probe(background, path.join(bin.dir, 'nope')), { errno: 'ENOENT' });
    assert.deepEqual(bin.calls(), []);
  });
});

describe('SystemMounter mkfs/growFs/checkFs', () => {
  it('mkfs.ext4 without discard, lazy init, extra args before the device', async () => {
    await m.mkfs(background, '/dev/mapper/v', 'ext4', { extraArgs: ['-L', 'data'] });
    assert.deepEqual(bin.calls(), [['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', '-L', 'data', '/dev/mapper/v']]);
  });

  it('mkfs.ext4 of a zeroed device marks the inode tables zeroed when e2fsprogs is 1.47 or later (asked once)', async () => {
    bin.answer('mkfs.ext4', { stderr: 'mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n' });
    await m.mkfs(background, '/dev/mapper/v', 'ext4', { zeroed: true });
    await m.mkfs(background, '/dev/mapper/w', 'ext4', { zeroed: true });
    await m.mkfs(background, '/dev/mapper/x', 'ext4');
    assert.deepEqual(bin.calls(), [
      ['mkfs.ext4', '-V'],
      ['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,assume_storage_prezeroed=1', '/dev/mapper/v'],
      ['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,assume_storage_prezeroed=1', '/dev/mapper/w'],
      ['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', '/dev/mapper/x'],
    ]);
  });

  it('an older mke2fs, or one that cannot say, gets the lazy-init options even for a zeroed device', async () => {
    bin.answer('mkfs.ext4', { stderr: 'mke2fs 1.46.5 (30-Dec-2021)\n' });
    await m.mkfs(background, '/dev/mapper/v', 'ext4', { zeroed: true });
    assert.deepEqual(bin.calls().at(-1), ['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', '/dev/mapper/v']);
    assert.equal(e2fsprogsAtLeast({ stdout: '', stderr: 'mke2fs 2.0 (1-Jan-2030)' }, '1.47'), true);
    assert.equal(e2fsprogsAtLeast({ stdout: '', stderr: 'mke2fs 1.47.2 (1-Jan-2025)' }, '1.47'), true);
    assert.equal(e2fsprogsAtLeast({ stdout: '', stderr: 'mke2fs 1.9.0' }, '1.47'), false);
    assert.equal(e2fsprogsAtLeast({ stdout: '', stderr: '' }, '1.47'), false);
  });

  it('mkfs.xfs with -K (no discard)', async () => {
    await m.mkfs(background, '/dev/mapper/v', 'xfs');
    assert.deepEqual(bin.calls(), [['mkfs.xfs', '-f', '-q', '-K', '/dev/mapper/v']]);
  });

  it('mkfs failure is a MountError with the exit code', async () => {
    bin.answer('mkfs.xfs', { exit: [1], stderr: 'mkfs.xfs: cannot open /dev/mapper/v: Device or resource busy\n' });
    await rejectsWith(m.mkfs(background, '/dev/mapper/v', 'xfs'), { errno: 'EBUSY', exitCode: 1 });
  });

  it('unsupported types fail clearly without running anything', async () => {
    await rejectsWith(m.mkfs(background, '/dev/x', 'btrfs' as 'ext4'), { message: /unsupported filesystem type "btrfs"/ });
    await rejectsWith(m.growFs(background, '/dev/x', '/mnt', 'vfat'), { message: /unsupported filesystem type "vfat"/ });
    await rejectsWith(m.checkFs(background, '/dev/x', 'vfat'), { message: /unsupported/ });
    assert.deepEqual(bin.calls(), []);
  });

  it('growFs: resize2fs takes the device, xfs_growfs the mount point', async () => {
    await m.growFs(background, '/dev/mapper/v', '/mnt/v', 'ext4');
    await m.growFs(background, '/dev/mapper/w', '/mnt/w', 'xfs');
    assert.deepEqual(bin.calls(), [['resize2fs', '/dev/mapper/v'], ['xfs_growfs', '/mnt/w']]);
  });

  it('checkFs ext4: exit 0 and 1 succeed, 4 fails; xfs runs nothing', async () => {
    bin.answer('fsck.ext4', { exit: [0, 1, 4], stderr: 'UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n' });
    await m.checkFs(background, '/dev/mapper/v', 'ext4');
    await m.checkFs(background, '/dev/mapper/v', 'ext4');
    await rejectsWith(m.checkFs(background, '/dev/mapper/v', 'ext4'), { exitCode: 4, stderr: /MANUALLY/ });
    await m.checkFs(background, '/dev/mapper/v', 'xfs');
    assert.deepEqual(bin.calls(), [['fsck.ext4', '-p', '/dev/mapper/v'], ['fsck.ext4', '-p', '/dev/mapper/v'], ['fsck.ext4', '-p', '/dev/mapper/v']]);
  });
});

describe('SystemMounter blockSize/fsStats', () => {
  it('parses blockdev --getsize64', async () => {
    bin.answer('blockdev', { stdout: '1073741824\n' });
    assert.equal(await m.blockSize(background, '/dev/mapper/v'), 1073741824);
    assert.deepEqual(bin.calls(), [['blockdev', '--getsize64', '/dev/mapper/v']]);
  });

  it('rejects non-numeric blockdev output', async () => {
    bin.answer('blockdev', { stdout: 'huh\n' });
    await rejectsWith(m.blockSize(background, '/dev/mapper/v'), { message: /unexpected output/ });
  });

  it('a hanging tool is cut off by maxMs', async () => {
    bin.answer('blockdev', { sleep: 10 });
    const quick = new SystemMounter({ binDir: bin.dir, maxMs: 200 });
    const t0 = Date.now();
    await rejectsWith(quick.blockSize(background, '/dev/x'), { message: /timed out/ });
    assert.ok(Date.now() - t0 < 5000);
  });

  it('fsStats matches statfs(2) of the path', async () => {
    const s = statfsSync(bin.dir);
    const st = await m.fsStats(background, bin.dir);
    assert.equal(st.totalBytes, s.blocks * s.bsize);
    assert.equal(st.totalInodes, s.files);
    assert.ok(st.usedBytes + st.availableBytes <= st.totalBytes);
    assert.equal(st.usedInodes + st.freeInodes, st.totalInodes);
  });

  it('fsStats of a missing path is ENOENT', async () => {
    await rejectsWith(m.fsStats(background, path.join(bin.dir, 'missing')), { errno: 'ENOENT' });
  });
});

/** Any block device node on this host, to exercise matching by major:minor. */
function someBlockDevice(): { path: string; mm: string } {
  for (const name of readdirSync('/dev')) {
    const p = path.join('/dev', name);
    try {
      const st = statSync(p, { bigint: true });
      if (st.isBlockDevice()) return { path: p, mm: devNo(st.rdev) };
    } catch { /* unreadable entry */ }
  }
  throw new Error('no block device node under /dev: this test needs one (e.g. /dev/loop0)');
}

describe('SystemMounter findMount/mountsOf from mountinfo', () => {
  it('finds the top mount at a target and matches devices by major:minor or by source', async () => {
    const blk = someBlockDevice();
    const info = path.join(bin.dir, 'mountinfo');
    writeFileSync(info, [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
      `40 27 ${blk.mm} / /mnt/st\\040age rw,relatime shared:1 - ext4 /some/other/name rw`,
      `41 27 ${blk.mm} /sub /mnt/pub ro,relatime shared:1 - ext4 /some/other/name rw`,
      '42 27 0:44 / /mnt/pub rw,relatime - tmpfs tmpfs rw',
      '43 27 253:9 / /mnt/gone rw - xfs /dev/mapper/gone rw',
      '',
    ].join('\n'));
    const sm = new SystemMounter({ binDir: bin.dir, mountinfoPath: info });
    assert.equal((await sm.findMount(background, '/mnt/st age/'))?.majorMinor, blk.mm);
    assert.equal((await sm.findMount(background, '/mnt/pub'))?.fsType, 'tmpfs', 'the later (stacked) mount wins');
    assert.equal(await sm.findMount(background, '/mnt/none'), undefined);
    const byMm = await sm.mountsOf(background, blk.path);
    assert.deepEqual(byMm.map((e) => [e.target, e.root]), [['/mnt/st age', '/'], ['/mnt/pub', '/sub']]);
    const bySource = await sm.mountsOf(background, '/dev/mapper/gone');
    assert.deepEqual(bySource.map((e) => e.target), ['/mnt/gone']);
  });

  it('mountOwner judges a path from one reading of the mount table, and mountAtAndOf agrees with findMount + mountsOf', async () => {
    const blk = someBlockDevice();
    const info = path.join(bin.dir, 'mountinfo');
    writeFileSync(info, [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
      `40 27 ${blk.mm} / /mnt/stage rw,relatime - ext4 ${blk.path} rw`,
      `41 27 ${blk.mm} / /mnt/pub rw,relatime - ext4 ${blk.path} rw`,
      '42 27 0:44 / /mnt/other rw,relatime - tmpfs tmpfs rw',
      '',
    ].join('\n'));
    const sm = new SystemMounter({ binDir: bin.dir, mountinfoPath: info });
    const reads: string[] = [];
    const readFile = fsp.readFile;
    fsp.readFile = ((file: string, ...rest: unknown[]) => {
      if (file === info) reads.push(file);
      return (readFile as (...a: unknown[]) => Promise<unknown>)(file, ...rest);
    }) as typeof fsp.readFile;
    try {
      for (const [at, want] of [['/mnt/stage', 'ours'], ['/mnt/other', 'foreign'], ['/mnt/none', 'none']] as const) {
        reads.length = 0;
        assert.equal((await mountOwner(background, sm, at, blk.path, 'mount')).kind, want, at);
        assert.equal(reads.length, 1, `${at}: mountinfo read ${reads.length} times`);
      }
      const both = await sm.mountAtAndOf(background, '/mnt/pub', blk.path);
      assert.deepEqual(both, { top: await sm.findMount(background, '/mnt/pub'), ofDevice: await sm.mountsOf(background, blk.path) });
      assert.deepEqual(await sm.mountAtAndOf(background, '/mnt/none', blk.path), { top: undefined, ofDevice: [] });
    } finally {
      fsp.readFile = readFile;
    }
  });

  it('an unreadable mountinfo is a MountError', async () => {
    const sm = new SystemMounter({ mountinfoPath: path.join(bin.dir, 'nope') });
    await rejectsWith(sm.findMount(background, '/'), { errno: 'ENOENT' });
  });
});

describe('LosetupLoopDevices argv', () => {
  it('find parses -j output and returns undefined when nothing is attached', async () => {
    const l = new LosetupLoopDevices({ binDir: bin.dir });
    assert.equal(await l.find(background, '/pool/data.img'), undefined);
    bin.answer('losetup', { stdout: '/dev/loop3\n/dev/loop5\n' });
    assert.equal(await l.find(background, '/pool/data.img'), '/dev/loop3');
    assert.deepEqual(bin.calls()[0], ['losetup', '-j', '/pool/data.img', '-n', '-O', 'NAME']);
  });

  it('attach reuses an existing attachment', async () => {
    bin.answer('losetup', { stdout: '/dev/loop2\n' });
    const l = new LosetupLoopDevices({ binDir: bin.dir });
    assert.equal(await l.attach(background, '/pool/data.img'), '/dev/loop2');
    assert.equal(bin.calls().length, 1);
  });

  it('attach otherwise runs -f --show; detach and refresh pass the device', async () => {
    const l = new LosetupLoopDevices({ binDir: bin.dir });
    // Every call prints nothing, so find sees no attachment and attach must fail on the empty --show.
    await rejectsWith(l.attach(background, '/pool/data.img'), { message: /printed no device/ });
    await l.detach(background, '/dev/loop4');
    await l.refresh(background, '/dev/loop4');
    assert.deepEqual(bin.calls(), [
      ['losetup', '-j', '/pool/data.img', '-n', '-O', 'NAME'],
      ['losetup', '-f', '--show', '/pool/data.img'],
      ['losetup', '-d', '/dev/loop4'],
      ['losetup', '-c', '/dev/loop4'],
    ]);
  });

  it('detach failure carries ENXIO', async () => {
    bin.answer('losetup', { exit: [1], stderr: 'losetup: /dev/loop9: detach failed: No such device or address\n' });
    await rejectsWith(new LosetupLoopDevices({ binDir: bin.dir }).detach(background, '/dev/loop9'), { errno: 'ENXIO', exitCode: 1 });
  });
});
