/**
 * KernelMounter over a kernel double: what mount(2)/umount2(2) are given, the bind's remount
 * that keeps the flags the new mount already has, the cleanup when it fails, the errors.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { KernelMounter, type SyscallTransport } from '../../../src/mount/kernel.ts';
import { MS } from '../../../src/mount/options.ts';
import { MountError } from '../../../src/mount/types.ts';
import { devNo } from '../../../src/system/blockdev.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { SysError } from '../../../src/system/ffi.ts';

interface Call { op: 'mount' | 'umount2'; source?: string | null; target: string; fsType?: string | null; flags: number; data?: string | null }

/**
 * A kernel with a mountinfo file: a bind takes the per-mount options `inherited` (those of the
 * mount it binds from), a remount replaces them with what its flags say, unmount removes the
 * line or fails EINVAL; `fail` makes the next matching call fail with that errno.
 */
class KernelDouble implements SyscallTransport {
  readonly calls: Call[] = [];
  inherited = 'rw,nosuid,nodev,relatime';
  fail: { match: (c: Call) => boolean; errno: string } | undefined;
  readonly #lines: string[] = [];
  readonly mountinfo: string;
  constructor(mountinfo: string) { this.mountinfo = mountinfo; this.#write(); }

  #write(): void { writeFileSync(this.mountinfo, this.#lines.map((l) => `${l}\n`).join('')); }
  #check(c: Call, what: string): void {
    this.calls.push(c);
    if (this.fail?.match(c)) {
      const errno = this.fail.errno;
      this.fail = undefined;
      throw new SysError(what, errno, 1);
    }
  }
  async mount(_ctx: unknown, source: string | null, target: string, fsType: string | null, flags: number, data: string | null, what: string): Promise<void> {
    this.#check({ op: 'mount', source, target, fsType, flags, data }, what);
    if (flags & MS.REMOUNT) {
      const i = this.#lines.findLastIndex((l) => l.split(' ')[4] === target);
      const words = [flags & MS.RDONLY ? 'ro' : 'rw', ...[[MS.NOSUID, 'nosuid'], [MS.NODEV, 'nodev'], [MS.NOEXEC, 'noexec'], [MS.RELATIME, 'relatime']].filter(([f]) => flags & (f as number)).map(([, w]) => w)];
      this.#lines[i] = this.#lines[i]!.replace(/^(\S+ \S+ \S+ \S+ \S+) \S+/, `$1 ${words.join(',')}`);
    } else if (!(flags & (MS.SHARED | MS.PRIVATE))) {
      this.#lines.push(`${40 + this.#lines.length} 1 253:3 / ${target} ${flags & MS.BIND ? this.inherited : 'rw'} - ${fsType ?? 'ext4'} ${source} rw`);
    }
    this.#write();
  }
  async umount2(_ctx: unknown, target: string, flags: number, what: string): Promise<void> {
    this.#check({ op: 'umount2', target, flags }, what);
    const i = this.#lines.findLastIndex((l) => l.split(' ')[4] === target);
    if (i < 0) throw new SysError(what, 'EINVAL', 22);
    this.#lines.splice(i, 1);
    this.#write();
  }
  mounted(): string[] { return readFileSync(this.mountinfo, 'utf8').split('\n').filter((l) => l !== ''); }
}

async function errorOf(p: Promise<unknown>): Promise<MountError> {
  try { await p; } catch (err) { assert.ok(err instanceof MountError, `a MountError, not ${String(err)}`); return err; }
  assert.fail('expected a failure');
}

describe('KernelMounter', () => {
  let dir: string;
  let k: KernelDouble;
  let m: KernelMounter;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dmthin-kernel-'));
    mkdirSync(path.join(dir, 'real'));
    symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    k = new KernelDouble(path.join(dir, 'mountinfo'));
    m = new KernelMounter({ mountinfoPath: k.mountinfo, transport: k });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('mount gives the kernel flags and the filesystem\'s data, at the canonical target; the mapper name kept as given', async () => {
    await m.mount(ctx, '/dev/mapper/vol', path.join(dir, 'link'), 'xfs', ['noatime', 'nodev', 'nouuid', 'nofail', 'ro', 'rw']);
    assert.deepEqual(k.calls, [{ op: 'mount', source: '/dev/mapper/vol', target: path.join(dir, 'real'), fsType: 'xfs', flags: MS.NOATIME | MS.NODEV, data: 'nouuid' }]);
    assert.equal((await m.findMount(ctx, path.join(dir, 'link')))?.fsType, 'xfs');
  });
  it('mount without data passes none; a propagation word is a second call on the new mount', async () => {
    await m.mount(ctx, '/dev/mapper/vol', path.join(dir, 'real'), 'ext4', ['ro', 'shared']);
    assert.deepEqual(k.calls.map((c) => [c.flags, c.data, c.target]), [[MS.RDONLY, null, path.join(dir, 'real')], [MS.SHARED, null, path.join(dir, 'real')]]);
  });
  it('mount refuses bind/remount/move words without asking the kernel', async () => {
    for (const word of ['bind', 'remount', 'rbind', 'move']) {
      assert.equal((await errorOf(m.mount(ctx, '/dev/mapper/vol', path.join(dir, 'real'), 'ext4', [word]))).errno, 'EINVAL');
    }
    assert.deepEqual(k.calls, []);
  });
  it('a failed syscall is a MountError with its errno name; a deadline passed is ETIMEDOUT', async () => {
    k.fail = { match: () => true, errno: 'ENOENT' };
    const e = await errorOf(m.mount(ctx, '/dev/mapper/vol', path.join(dir, 'nope'), 'ext4', []));
    assert.equal(e.errno, 'ENOENT');
    assert.match(e.message, /ENOENT/);
    k.fail = { match: () => true, errno: 'ETIMEDOUT' };
    assert.equal((await errorOf(m.unmount(ctx, path.join(dir, 'real')))).errno, 'ETIMEDOUT');
  });
  it('a bind without options is one MS_BIND call, source and target canonical', async () => {
    await m.bindMount(ctx, path.join(dir, 'link'), path.join(dir, 'link'), ['rw', 'bind', 'defaults']);
    assert.deepEqual(k.calls, [{ op: 'mount', source: path.join(dir, 'real'), target: path.join(dir, 'real'), fsType: null, flags: MS.BIND, data: null }]);
  });
  it('a read-only bind remounts with the flags the bind already has, plus ro', async () => {
    const target = path.join(dir, 'real');
    await m.bindMount(ctx, '/some/source', target, ['ro', 'noexec']);
    assert.equal(k.calls.length, 2);
    assert.equal(k.calls[1]!.flags, MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME);
    assert.deepEqual((await m.findMount(ctx, target))?.options, ['ro', 'nosuid', 'nodev', 'noexec', 'relatime']);
  });
  it('a failed remount unmounts the bind, so no writable bind is left, and says why', async () => {
    const target = path.join(dir, 'real');
    k.fail = { match: (c) => (c.flags & MS.REMOUNT) !== 0, errno: 'EPERM' };
    const e = await errorOf(m.bindMount(ctx, '/some/source', target, ['ro']));
    assert.equal(e.errno, 'EPERM');
    assert.deepEqual(k.calls.map((c) => c.op), ['mount', 'mount', 'umount2']);
    assert.equal(await m.findMount(ctx, target), undefined);
  });
  it('a bind refuses rbind/move among its options before binding anything', async () => {
    assert.equal((await errorOf(m.bindMount(ctx, '/a', path.join(dir, 'real'), ['rbind']))).errno, 'EINVAL');
    assert.deepEqual(k.calls, []);
  });
  it('unmount: umount2(target, 0); not mounted is EINVAL, as callers test for', async () => {
    const target = path.join(dir, 'real');
    await m.mount(ctx, '/dev/mapper/vol', target, 'ext4', []);
    await m.unmount(ctx, path.join(dir, 'link'));
    assert.deepEqual(k.calls.at(-1), { op: 'umount2', target, flags: 0 });
    assert.equal(k.mounted().length, 0);
    assert.equal((await errorOf(m.unmount(ctx, target))).errno, 'EINVAL');
  });
  it('blockSize reads sysfs, no blockdev process: a block node its size, /dev/null ENOTBLK', async () => {
    const noTools = new KernelMounter({ mountinfoPath: k.mountinfo, transport: k, binDir: path.join(dir, 'no-tools') });
    const loop = readdirSync('/dev').map((n) => path.join('/dev', n)).find((p) => { try { return statSync(p).isBlockDevice(); } catch { return false; } });
    assert.ok(loop, 'this test needs a block device node under /dev');
    const dev = devNo(statSync(loop, { bigint: true }).rdev);
    assert.equal(await noTools.blockSize(ctx, loop), Number(readFileSync(`/sys/dev/block/${dev}/size`, 'utf8').trim()) * 512);
    assert.equal((await errorOf(noTools.blockSize(ctx, '/dev/null'))).errno, 'ENOTBLK');
  });
});
