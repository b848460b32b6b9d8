import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { background as ctx } from '../../../../src/system/context.ts';
import { type BlockDeviceModel, FakeMounter, SimpleBlockDevices } from '../../../doubles/mount/fake.ts';
import { FakeLoopDevices } from '../../../doubles/mount/fake-loop.ts';
import { MountError } from '../../../../src/mount/types.ts';

const GiB = 1024 ** 3;

async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof MountError, `expected MountError, got ${String(err)}`);
  return err.errno;
}

function withDevice(size = GiB): FakeMounter {
  const m = new FakeMounter();
  m.addDevice('/dev/mapper/v', size);
  return m;
}

describe('FakeMounter mkfs/detectFs/mount', () => {
  it('detectFs sees nothing before mkfs and the type after; a missing device is ENOENT', async () => {
    const m = withDevice();
    assert.equal(await m.detectFs(ctx, '/dev/mapper/v'), undefined);
    assert.equal(await m.probe(ctx, '/dev/mapper/v'), undefined);
    await m.mkfs(ctx, '/dev/mapper/v', 'xfs');
    assert.equal(await m.detectFs(ctx, '/dev/mapper/v'), 'xfs');
    assert.deepEqual(m.filesystem('/dev/mapper/v'), { fsType: 'xfs', sizeBytes: GiB, usedBytes: 0, usedInodes: 0 });
    assert.equal(await errnoOf(m.detectFs(ctx, '/dev/mapper/none')), 'ENOENT');
    assert.equal(await errnoOf(m.probe(ctx, '/dev/mapper/none')), 'ENOENT');
  });

  it('mount fails ENOENT without the device, EINVAL without or with another fs, EBUSY on a mount point', async () => {
    const m = withDevice();
    m.addDevice('/dev/mapper/w', GiB);
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/none', '/t', 'ext4', [])), 'ENOENT');
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/v', '/t', 'ext4', [])), 'EINVAL');
    await m.mkfs(ctx, '/dev/mapper/v', 'xfs');
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/v', '/t', 'ext4', [])), 'EINVAL');
    await m.mount(ctx, '/dev/mapper/v', '/t/', 'xfs', ['noatime']);
    await m.mkfs(ctx, '/dev/mapper/w', 'ext4');
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/w', '/t', 'ext4', [])), 'EBUSY');
    assert.deepEqual(await m.findMount(ctx, '/t'), {
      target: '/t', source: '/dev/mapper/v', fsType: 'xfs', options: ['rw', 'noatime'], majorMinor: '253:0', root: '/',
    });
  });

  it('mkfs refuses unsupported types and mounted devices', async () => {
    const m = withDevice();
    assert.equal(await errnoOf(m.mkfs(ctx, '/dev/mapper/v', 'btrfs' as 'ext4')), 'EINVAL');
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/t', 'ext4', []);
    assert.equal(await errnoOf(m.mkfs(ctx, '/dev/mapper/v', 'xfs')), 'EBUSY');
    assert.equal(await m.detectFs(ctx, '/dev/mapper/v'), 'ext4', 'the failed mkfs changed nothing');
  });

  it('returns copies: mutating a result does not change the table', async () => {
    const m = withDevice();
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/t', 'ext4', []);
    const e = await m.findMount(ctx, '/t');
    e!.options.push('ro');
    e!.target = '/elsewhere';
    assert.deepEqual((await m.findMount(ctx, '/t'))?.options, ['rw']);
  });
});

describe('FakeMounter unmount and binds', () => {
  async function staged(): Promise<FakeMounter> {
    const m = withDevice();
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/staging/v', 'ext4', []);
    return m;
  }

  it('unmount of a non-mount point is EINVAL; a mount point with submounts is EBUSY', async () => {
    const m = await staged();
    assert.equal(await errnoOf(m.unmount(ctx, '/nowhere')), 'EINVAL');
    await m.bindMount(ctx, '/staging/v/data', '/staging/v/inner', []);
    assert.equal(await errnoOf(m.unmount(ctx, '/staging/v')), 'EBUSY');
    await m.unmount(ctx, '/staging/v/inner');
    await m.unmount(ctx, '/staging/v');
    assert.deepEqual(m.mounts(), []);
  });

  it('a bind of a mounted directory shares the device, records the root, and can be read-only', async () => {
    const m = await staged();
    await m.bindMount(ctx, '/staging/v/sub', '/pods/a', ['ro']);
    await m.bindMount(ctx, '/staging/v', '/pods/b', []);
    const a = await m.findMount(ctx, '/pods/a');
    assert.deepEqual(a, { target: '/pods/a', source: '/dev/mapper/v', fsType: 'ext4', options: ['ro'], majorMinor: '253:0', root: '/sub' });
    assert.deepEqual((await m.findMount(ctx, '/pods/b'))?.options, ['rw']);
    assert.deepEqual((await m.mountsOf(ctx, '/dev/mapper/v')).map((e) => e.target), ['/staging/v', '/pods/a', '/pods/b']);
    assert.equal(await errnoOf(m.bindMount(ctx, '/staging/v', '/pods/a', [])), 'EBUSY');
  });

  it('a bind of a block device node appears as devtmpfs, not as a mount of the device', async () => {
    const m = withDevice();
    await m.bindMount(ctx, '/dev/mapper/v', '/plugins/publish/vol/pod', []);
    const e = await m.findMount(ctx, '/plugins/publish/vol/pod');
    assert.equal(e?.fsType, 'devtmpfs');
    assert.deepEqual(await m.mountsOf(ctx, '/dev/mapper/v'), []);
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4'); // a device-node bind does not open the device
  });

  it('mountsOf a device that no longer exists matches the source string', async () => {
    const devices = new SimpleBlockDevices();
    devices.add('/dev/mapper/v', GiB);
    const m = new FakeMounter({ devices });
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/t', 'ext4', []);
    await m.unmount(ctx, '/t');
    devices.remove('/dev/mapper/v');
    assert.deepEqual(await m.mountsOf(ctx, '/dev/mapper/v'), []);
  });

  it('opens the device once per filesystem, held until the last mount (binds included) goes', async () => {
    const calls: Array<[string, number]> = [];
    const model: BlockDeviceModel = {
      sizeOf: (p) => (p === '/dev/mapper/v' ? GiB : undefined),
      adjustOpen: (p, d) => { calls.push([p, d]); },
    };
    const m = new FakeMounter({ devices: model });
    assert.throws(() => m.addDevice('/dev/x', 1), /default SimpleBlockDevices/);
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'ext4', []);
    await m.bindMount(ctx, '/s', '/p', []);
    assert.deepEqual(calls, [['/dev/mapper/v', 1]]);
    await m.unmount(ctx, '/s');
    assert.deepEqual(calls, [['/dev/mapper/v', 1]], 'the bind still pins the filesystem');
    await m.unmount(ctx, '/p');
    assert.deepEqual(calls, [['/dev/mapper/v', 1], ['/dev/mapper/v', -1]]);
  });

  it('SimpleBlockDevices refuses to remove an open device', async () => {
    const m = withDevice();
    const devices = m.devices as SimpleBlockDevices;
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'ext4', []);
    assert.equal(devices.openCount('/dev/mapper/v'), 1);
    assert.throws(() => devices.remove('/dev/mapper/v'), (e: unknown) => e instanceof MountError && e.errno === 'EBUSY');
    await m.unmount(ctx, '/s');
    devices.remove('/dev/mapper/v');
    assert.equal(await errnoOf(m.blockSize(ctx, '/dev/mapper/v')), 'ENOENT');
  });
});

describe('FakeMounter sizes, growFs, checkFs, fsStats', () => {
  it('growFs brings the filesystem to the device size; fsStats follows', async () => {
    const m = withDevice();
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'ext4', []);
    (m.devices as SimpleBlockDevices).resize('/dev/mapper/v', 2 * GiB);
    assert.equal(await m.blockSize(ctx, '/dev/mapper/v'), 2 * GiB);
    assert.equal((await m.fsStats(ctx, '/s')).totalBytes, GiB, 'not grown yet');
    assert.deepEqual(await m.probe(ctx, '/dev/mapper/v'), { fsType: 'ext4', sizeBytes: GiB });
    await m.growFs(ctx, '/dev/mapper/v', '/s', 'ext4');
    assert.equal((await m.fsStats(ctx, '/s/deep/dir')).totalBytes, 2 * GiB);
    assert.deepEqual(await m.probe(ctx, '/dev/mapper/v'), { fsType: 'ext4', sizeBytes: 2 * GiB });
  });

  it('growFs needs the right filesystem, and xfs needs it mounted at the mount point', async () => {
    const m = withDevice();
    assert.equal(await errnoOf(m.growFs(ctx, '/dev/mapper/v', '/s', 'ext4')), 'EINVAL');
    await m.mkfs(ctx, '/dev/mapper/v', 'xfs');
    assert.equal(await errnoOf(m.growFs(ctx, '/dev/mapper/v', '/s', 'ext4')), 'EINVAL');
    assert.equal(await errnoOf(m.growFs(ctx, '/dev/mapper/v', '/s', 'xfs')), 'EINVAL');
    assert.equal(await errnoOf(m.growFs(ctx, '/dev/mapper/v', '/s', 'zfs')), 'EINVAL');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'xfs', []);
    await m.growFs(ctx, '/dev/mapper/v', '/s', 'xfs');
  });

  it('checkFs passes a matching unmounted filesystem and fails otherwise', async () => {
    const m = withDevice();
    const fsck = await m.checkFs(ctx, '/dev/mapper/v', 'ext4').then(() => undefined, (e: MountError) => e);
    assert.equal(fsck?.exitCode, 8, 'no filesystem: bad superblock');
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.checkFs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'ext4', []);
    assert.equal(await errnoOf(m.checkFs(ctx, '/dev/mapper/v', 'ext4')), 'EBUSY');
    assert.equal(await errnoOf(m.checkFs(ctx, '/dev/mapper/v', 'vfat')), 'EINVAL');
  });

  it('setUsage shows up in fsStats, through binds too; unmounted paths are ENOENT', async () => {
    const m = withDevice();
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mount(ctx, '/dev/mapper/v', '/s', 'ext4', []);
    await m.bindMount(ctx, '/s', '/p', ['ro']);
    m.setUsage('/s', 100 * 1024 ** 2, 42);
    const st = await m.fsStats(ctx, '/p');
    assert.deepEqual(st, {
      totalBytes: GiB, usedBytes: 100 * 1024 ** 2, availableBytes: GiB - 100 * 1024 ** 2,
      totalInodes: GiB / 16384, usedInodes: 42, freeInodes: GiB / 16384 - 42,
    });
    assert.equal(await errnoOf(m.fsStats(ctx, '/elsewhere')), 'ENOENT');
    assert.throws(() => m.setUsage('/elsewhere', 1, 1), MountError);
  });
});

describe('FakeMounter fault injection and ops log', () => {
  it('fails the next matching call once by default, then works', async () => {
    const m = withDevice();
    m.inject({ op: 'mkfs', error: 'EIO' });
    assert.equal(await errnoOf(m.mkfs(ctx, '/dev/mapper/v', 'ext4')), 'EIO');
    assert.equal(await m.detectFs(ctx, '/dev/mapper/v'), undefined, 'the failed mkfs wrote nothing');
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4', { zeroed: true, extraArgs: ['-L', 'x'] });
    assert.deepEqual(m.ops, [
      { op: 'mkfs', args: ['/dev/mapper/v', 'ext4'] },
      { op: 'detectFs', args: ['/dev/mapper/v'] },
      { op: 'mkfs', args: ['/dev/mapper/v', 'ext4', 'zeroed', '-L', 'x'] },
    ]);
  });

  it('matches by argument, regexp or predicate, and honours times', async () => {
    const m = withDevice();
    m.addDevice('/dev/mapper/w', GiB);
    await m.mkfs(ctx, '/dev/mapper/v', 'ext4');
    await m.mkfs(ctx, '/dev/mapper/w', 'ext4');
    m.inject({ op: 'mount', match: '/dev/mapper/w', error: 'EBUSY', times: 2 });
    m.inject({ op: 'unmount', match: /^\/pods\//, error: new Error('boom') });
    m.inject({ op: 'blockSize', match: (c) => c.args[0] === '/dev/mapper/v', error: 'EIO', times: Infinity });
    await m.mount(ctx, '/dev/mapper/v', '/a', 'ext4', []);
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/w', '/b', 'ext4', [])), 'EBUSY');
    assert.equal(await errnoOf(m.mount(ctx, '/dev/mapper/w', '/b', 'ext4', [])), 'EBUSY');
    await m.mount(ctx, '/dev/mapper/w', '/b', 'ext4', []);
    await m.bindMount(ctx, '/a', '/pods/x', []);
    await assert.rejects(m.unmount(ctx, '/pods/x'), /boom/);
    await m.unmount(ctx, '/pods/x');
    for (let i = 0; i < 3; i++) assert.equal(await errnoOf(m.blockSize(ctx, '/dev/mapper/v')), 'EIO');
    assert.equal(await m.blockSize(ctx, '/dev/mapper/w'), GiB);
  });
});

describe('FakeLoopDevices', () => {
  it('attaches files to the lowest free loop device and reuses attachments', async () => {
    const l = new FakeLoopDevices();
    assert.equal(await l.find(ctx, '/pool/a.img'), undefined);
    assert.equal(await l.attach(ctx, '/pool/a.img'), '/dev/loop0');
    assert.equal(await l.attach(ctx, '/pool/b.img'), '/dev/loop1');
    assert.equal(await l.attach(ctx, '/pool/a.img'), '/dev/loop0');
    await l.detach(ctx, '/dev/loop0');
    assert.equal(await l.find(ctx, '/pool/a.img'), undefined);
    assert.equal(await l.attach(ctx, '/pool/c.img'), '/dev/loop0');
    assert.deepEqual([...l.attached()], [['/dev/loop1', '/pool/b.img'], ['/dev/loop0', '/pool/c.img']]);
  });

  it('detach or refresh of an unknown device is ENXIO; faults can be injected', async () => {
    const l = new FakeLoopDevices();
    assert.equal(await errnoOf(l.detach(ctx, '/dev/loop7')), 'ENXIO');
    assert.equal(await errnoOf(l.refresh(ctx, '/dev/loop7')), 'ENXIO');
    l.inject({ op: 'attach', error: 'ENOSPC' });
    assert.equal(await errnoOf(l.attach(ctx, '/pool/a.img')), 'ENOSPC');
    assert.deepEqual(l.attached(), new Map());
    assert.equal(l.ops.length, 3);
  });
});
