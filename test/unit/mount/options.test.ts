/** The mount(8) option split: flags, userspace-only words, the filesystem's data string. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindRemountFlags, MS, splitOptions } from '../../../src/mount/options.ts';

describe('splitOptions', () => {
  const cases: Array<[string, string[], number, string]> = [
    ['nothing', [], 0, ''],
    ['defaults changes nothing, as in libmount', ['ro', 'defaults'], MS.RDONLY, ''],
    ['the per-mount flags', ['ro', 'nosuid', 'nodev', 'noexec'], MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, ''],
    ['a later word wins', ['ro', 'rw', 'nodev', 'dev', 'exec', 'noexec'], MS.NOEXEC, ''],
    ['an earlier clear does not stop a later set', ['suid', 'nosuid'], MS.NOSUID, ''],
    ['the atime family, each its own bit', ['noatime', 'nodiratime', 'relatime', 'norelatime', 'strictatime'], MS.NOATIME | MS.NODIRATIME | MS.STRICTATIME, ''],
    ['atime clears noatime', ['noatime', 'atime', 'diratime'], 0, ''],
    ['sync, dirsync, lazytime, mand, silent', ['sync', 'dirsync', 'lazytime', 'mand', 'silent'], MS.SYNCHRONOUS | MS.DIRSYNC | MS.LAZYTIME | MS.MANDLOCK | MS.SILENT, ''],
    ['their opposites', ['sync', 'async', 'lazytime', 'nolazytime', 'mand', 'nomand', 'silent', 'loud'], 0, ''],
    ['filesystem options kept in order', ['nouuid', 'ro', 'discard', 'data=ordered', 'errors=remount-ro'], MS.RDONLY, 'nouuid,discard,data=ordered,errors=remount-ro'],
    ['userspace-only words dropped', ['auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'nofail', '_netdev', 'x-systemd.automount', 'X-mount.mkdir', 'comment=foo', 'loop=/dev/loop0', 'user=bob', 'nodev'], MS.NODEV, ''],
    ['empty words skipped', ['', 'discard', ''], 0, 'discard'],
  ];
  for (const [name, words, flags, data] of cases) {
    it(name, () => {
      const o = splitOptions(words);
      assert.equal(o.flags, flags, `flags of ${words.join(',')}`);
      assert.equal(o.data, data);
      assert.deepEqual(o.propagation, []);
      assert.deepEqual(o.operations, []);
    });
  }
  it('propagation words become their own calls, in order; operations are set aside', () => {
    const o = splitOptions(['shared', 'nodev', 'rprivate', 'bind', 'remount', 'rbind', 'move']);
    assert.deepEqual(o.propagation, [MS.SHARED, MS.PRIVATE | MS.REC]);
    assert.deepEqual(o.operations, ['bind', 'remount', 'rbind', 'move']);
    assert.equal(o.flags, MS.NODEV);
    assert.equal(o.data, '');
  });
  it('the flag values are the kernel\'s (linux/mount.h)', () => {
    assert.deepEqual([MS.RDONLY, MS.NOSUID, MS.NODEV, MS.NOEXEC, MS.REMOUNT, MS.NOATIME, MS.BIND, MS.REC, MS.RELATIME, MS.STRICTATIME, MS.LAZYTIME],
      [1, 2, 4, 8, 32, 1024, 4096, 16384, 0x200000, 0x1000000, 0x2000000]);
  });
});

describe('bindRemountFlags', () => {
  it('keeps the mount\'s current per-mount flags and adds the requested ones', () => {
    assert.equal(bindRemountFlags(['rw', 'nosuid', 'nodev', 'relatime'], ['ro']), MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.RELATIME);
  });
  it('requested words win over the current ones; mountinfo words that are not flags are ignored', () => {
    assert.equal(bindRemountFlags(['ro', 'noexec', 'idmapped'], ['exec', 'nodev', 'discard']), MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NODEV);
  });
});
