import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeMounter } from '../../doubles/mount/fake.ts';
import { describeMount, mountOwner } from '../../../src/mount/ownership.ts';
import { background as ctx } from '../../../src/system/context.ts';

const GiB = 1024 ** 3;

async function twoVolumes(): Promise<FakeMounter> {
  const m = new FakeMounter();
  for (const v of ['a', 'b']) {
    m.addDevice(`/dev/mapper/${v}`, GiB);
    await m.mkfs(ctx, `/dev/mapper/${v}`, 'ext4');
  }
  return m;
}
const kind = async (m: FakeMounter, p: string, dev: string, access: 'mount' | 'block' = 'mount') => (await mountOwner(ctx, m, p, dev, access)).kind;

describe('mountOwner', () => {
  it('the volume\'s own mount and a bind of it are its; another volume\'s and the node\'s are not', async () => {
    const m = await twoVolumes();
    m.addNodeMount({ target: '/proc', source: 'proc', fsType: 'proc', majorMinor: '0:22' });
    await m.mount(ctx, '/dev/mapper/a', '/k/staging/a', 'ext4', []);
    await m.bindMount(ctx, '/k/staging/a', '/k/pods/1/mount', []);
    await m.mount(ctx, '/dev/mapper/b', '/k/staging/b', 'ext4', []);
    assert.equal(await kind(m, '/k/staging/a', '/dev/mapper/a'), 'ours');
    assert.equal(await kind(m, '/k/pods/1/mount', '/dev/mapper/a'), 'ours');
    assert.equal(await kind(m, '/k/staging/b', '/dev/mapper/a'), 'foreign');
    assert.equal(await kind(m, '/proc', '/dev/mapper/a'), 'foreign');
    assert.equal(await kind(m, '/k/nothing', '/dev/mapper/a'), 'none');
    assert.equal(await kind(m, '/k/staging/a', '/dev/mapper/a', 'block'), 'foreign', 'a filesystem mount is not a bind of the device node');
  });
  it('judges the top of a stack: a foreign mount over the volume\'s is foreign', async () => {
    const m = await twoVolumes();
    await m.mount(ctx, '/dev/mapper/a', '/k/staging/a', 'ext4', []);
    m.addNodeMount({ target: '/k/staging/a', source: 'tmpfs', fsType: 'tmpfs', majorMinor: '0:41' });
    const owner = await mountOwner(ctx, m, '/k/staging/a', '/dev/mapper/a', 'mount');
    assert.equal(owner.kind, 'foreign');
    assert.equal(owner.kind === 'foreign' && describeMount(owner.entry), 'tmpfs (tmpfs, device 0:41)');
  });
  it('block: a bind of the volume\'s device node is its; of another node, or of /dev itself, is not', async () => {
    const m = await twoVolumes();
    await m.bindMount(ctx, '/dev/mapper/a', '/k/dev/a', []);
    await m.bindMount(ctx, '/dev/mapper/b', '/k/dev/b', []);
    assert.equal(await kind(m, '/k/dev/a', '/dev/mapper/a', 'block'), 'ours');
    assert.equal(await kind(m, '/k/dev/b', '/dev/mapper/a', 'block'), 'foreign');
    m.addNodeMount({ target: '/dev', source: 'udev', fsType: 'devtmpfs', majorMinor: '0:5' });
    assert.equal(await kind(m, '/dev', '/dev/mapper/a', 'block'), 'foreign');
  });
});
