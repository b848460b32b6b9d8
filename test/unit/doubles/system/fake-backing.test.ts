// The fake filesystem under a file pool answers as statfs, stat and fallocate would.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { background as ctx } from '../../../../src/system/context.ts';
import { FakeBackingFs } from '../../../doubles/system/fake-backing.ts';

const MiB = 1024 * 1024;

describe('FakeBackingFs', () => {
  it('a sparse file takes space only as it is written, never past its length, and ENOSPC when the filesystem is full', async () => {
    const fs = new FakeBackingFs(10 * MiB);
    fs.addFile('/d', 8 * MiB, '7:0');
    assert.deepEqual(await fs.usage('/d'), { lengthBytes: 8 * MiB, allocatedBytes: 0 });
    fs.write('/d', 3 * MiB);
    assert.equal(await fs.availableBytes('/d'), 7 * MiB);
    fs.write('/d', 100 * MiB);
    assert.deepEqual(await fs.usage('/d'), { lengthBytes: 8 * MiB, allocatedBytes: 8 * MiB });
    fs.addFile('/e', 8 * MiB);
    assert.throws(() => fs.write('/e', 3 * MiB), { name: 'SysError', errno: 'ENOSPC' });
    assert.equal((await fs.usage('/e')).allocatedBytes, 0, 'a failed write takes nothing');
    assert.equal(await fs.loopFile('7:0'), '/d');
    assert.equal(await fs.loopFile('8:0'), undefined);
  });
  it('allocate fills the holes or fails with ENOSPC taking nothing; an unknown path is ENOENT', async () => {
    const fs = new FakeBackingFs(4 * MiB);
    fs.addFile('/m', 8 * MiB);
    await assert.rejects(fs.allocate(ctx, '/m'), { errno: 'ENOSPC' });
    assert.equal(await fs.availableBytes('/m'), 4 * MiB);
    fs.free = 9 * MiB;
    await fs.allocate(ctx, '/m');
    assert.deepEqual([await fs.availableBytes('/m'), (await fs.usage('/m')).allocatedBytes], [MiB, 8 * MiB]);
    await assert.rejects(fs.usage('/nope'), { code: 'ENOENT' });
  });
});
