import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertWellFormed, PAGE, reconstructAllocated, reconstructDelta } from '../../realkernel/reconstruct.ts';

const SIZE = 12 * 1024 * 1024; // three chunks
const r = (byte_offset: number, size_bytes: number) => ({ byte_offset, size_bytes });

describe('the reconstruction check (test/realkernel/reconstruct.ts)', () => {
  let dir: string;
  let base: string;
  let target: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reconstruct-'));
    const b = Buffer.alloc(SIZE);
    b.fill(1, 0, 64 * 1024);
    const t = Buffer.from(b);
    t.fill(2, 5 * 1024 * 1024, 5 * 1024 * 1024 + 100); // a change inside the second chunk
    t.fill(0, 0, PAGE); // a discard
    [base, target] = [join(dir, 'base'), join(dir, 'target')];
    await writeFile(base, b);
    await writeFile(target, t);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('passes a delta covering every change, counting the equal pages it also reports', () => {
    const c = reconstructDelta(base, target, [r(0, 64 * 1024), r(5 * 1024 * 1024, 64 * 1024)], SIZE);
    assert.equal(c.missingBytes, 0);
    assert.equal(c.compared, SIZE);
    assert.equal(c.falseChangedBytes, 64 * 1024 - PAGE + 64 * 1024 - PAGE, 'all but the changed page of each range');
  });

  it('finds a change the delta left out, and where', () => {
    const c = reconstructDelta(base, target, [r(0, PAGE)], SIZE);
    assert.equal(c.missingBytes, 100);
    assert.equal(c.firstMissing, 5 * 1024 * 1024);
    const w = reconstructDelta(base, target, [r(0, PAGE)], SIZE, [{ start: 0, end: 1024 * 1024 }]);
    assert.equal(w.missingBytes, 0, 'outside the windows nothing is compared');
  });

  it('allocated: zeros plus the ranges must be the image', () => {
    assert.equal(reconstructAllocated(base, [r(0, 64 * 1024)], SIZE).missingBytes, 0);
    const lost = reconstructAllocated(base, [r(0, 32 * 1024)], SIZE);
    assert.deepEqual([lost.missingBytes, lost.firstMissing], [32 * 1024, 32 * 1024]);
    assert.equal(reconstructAllocated(base, [r(0, 64 * 1024), r(SIZE - PAGE, PAGE)], SIZE).zeroAllocatedBytes, PAGE);
  });

  it('refuses ranges out of order, overlapping, empty or past the capacity', () => {
    assert.throws(() => assertWellFormed([r(PAGE, PAGE), r(0, PAGE)], SIZE));
    assert.throws(() => assertWellFormed([r(0, 2 * PAGE), r(PAGE, PAGE)], SIZE));
    assert.throws(() => assertWellFormed([r(0, 0)], SIZE));
    assert.throws(() => assertWellFormed([r(SIZE - PAGE, 2 * PAGE)], SIZE));
    assert.throws(() => assertWellFormed([r(0, PAGE)], SIZE, PAGE), 'the first must end after starting_offset');
  });
});
