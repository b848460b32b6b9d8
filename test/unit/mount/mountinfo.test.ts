import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMountinfo, parseMountinfoLine, toMountEntry, unescapeMountinfo } from '../../../src/mount/mountinfo.ts';

describe('unescapeMountinfo', () => {
  it('decodes the octal escapes the kernel emits', () => {
    assert.equal(unescapeMountinfo('/a\\040b\\011c\\012d\\134e'), '/a b\tc\nd\\e');
  });
  it('leaves a backslash not followed by three octal digits alone', () => {
    assert.equal(unescapeMountinfo('/a\\b\\08x\\04'), '/a\\b\\08x\\04');
  });
});

describe('parseMountinfoLine', () => {
  it('parses the proc(5) example with an optional field', () => {
    const r = parseMountinfoLine('36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue');
    assert.deepEqual(r, {
      mountId: 36, parentId: 35, majorMinor: '98:0', root: '/mnt1', target: '/mnt2',
      options: ['rw', 'noatime'], optionalFields: ['master:1'], fsType: 'ext3', source: '/dev/root',
      superOptions: ['rw', 'errors=continue'],
    });
  });

  it('parses a line without optional fields', () => {
    const r = parseMountinfoLine('22 27 0:21 / /proc rw,relatime - proc proc rw');
    assert.deepEqual(r.optionalFields, []);
    assert.equal(r.fsType, 'proc');
    assert.equal(r.source, 'proc');
    assert.equal(r.target, '/proc');
  });

  it('unescapes a kubelet target path with a space and keeps several optional fields', () => {
    const line = '612 27 253:3 / /var/lib/kubelet/pods/0f1e/volumes/kubernetes.io~csi/pvc\\040one/mount '
      + 'ro,nosuid,relatime shared:310 master:12 propagate_from:3 - ext4 /dev/mapper/dmthin-pvc--one rw,stripe=16\n';
    const r = parseMountinfoLine(line);
    assert.equal(r.target, '/var/lib/kubelet/pods/0f1e/volumes/kubernetes.io~csi/pvc one/mount');
    assert.deepEqual(r.options, ['ro', 'nosuid', 'relatime']);
    assert.deepEqual(r.optionalFields, ['shared:310', 'master:12', 'propagate_from:3']);
    assert.equal(r.source, '/dev/mapper/dmthin-pvc--one');
    assert.deepEqual(r.superOptions, ['rw', 'stripe=16']);
  });

  it('reports the root of a bind mount of a subdirectory', () => {
    const r = parseMountinfoLine('700 27 7:0 /data/sub\\040dir /mnt/bind rw,relatime shared:1 - xfs /dev/loop0 rw,attr2,inode64,noquota');
    assert.equal(r.root, '/data/sub dir');
    assert.equal(r.majorMinor, '7:0');
    assert.equal(r.source, '/dev/loop0');
  });

  it('parses a bind of a block device node (devtmpfs source)', () => {
    const r = parseMountinfoLine('701 27 0:5 /dm-3 /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/uid rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=8043232k,nr_inodes=2010808,mode=755');
    assert.equal(r.root, '/dm-3');
    assert.equal(r.fsType, 'devtmpfs');
    assert.equal(r.source, 'udev');
    assert.deepEqual(r.superOptions, ['rw', 'size=8043232k', 'nr_inodes=2010808', 'mode=755']);
  });

  it('keeps an empty source as an empty string (two adjacent spaces)', () => {
    const r = parseMountinfoLine('90 27 0:50 / /mnt/t rw,relatime - tmpfs  rw,size=1024k');
    assert.equal(r.source, '');
    assert.equal(r.fsType, 'tmpfs');
    assert.deepEqual(r.superOptions, ['rw', 'size=1024k']);
  });

  it('rejects lines without a separator or with a bad device number', () => {
    assert.throws(() => parseMountinfoLine('36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw'), /malformed/);
    assert.throws(() => parseMountinfoLine('36 35 x /mnt1 /mnt2 rw - ext3 /dev/root rw'), /malformed/);
    assert.throws(() => parseMountinfoLine('36 35 98:0 /mnt1 /mnt2 rw -'), /malformed/);
  });
});

describe('parseMountinfo', () => {
  it('parses a whole file, skipping blank lines, and narrows to MountEntry', () => {
    const text = [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
      '',
      '42 27 7:0 / /tmp/x\\040y rw,relatime shared:5 - ext4 /dev/loop0 rw',
      '',
    ].join('\n');
    const recs = parseMountinfo(text);
    assert.equal(recs.length, 2);
    assert.deepEqual(toMountEntry(recs[1]!), {
      target: '/tmp/x y', source: '/dev/loop0', fsType: 'ext4', options: ['rw', 'relatime'], majorMinor: '7:0', root: '/',
    });
  });

  it('parses the live /proc/self/mountinfo of this process', async () => {
    const { readFile } = await import('node:fs/promises');
    const recs = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
    assert.ok(recs.some((r) => r.target === '/'), 'the root mount is listed');
  });
});
