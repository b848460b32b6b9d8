// The list bounds an agent keeps across a clean restart (src/kube/list-bounds.ts).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { keepListBounds, takeListBounds } from '../../../src/kube/list-bounds.ts';

describe('list bounds kept across a clean restart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmthin-bounds-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('are taken once: a second start (after a crash) finds none', async () => {
    const file = join(dir, 'state', 'list-bounds.json');
    await keepListBounds(file, { thinvolumes: '120', thinsnapshots: '7' });
    assert.deepEqual(await takeListBounds(file), { thinvolumes: '120', thinsnapshots: '7' });
    assert.equal(existsSync(file), false);
    assert.deepEqual(await takeListBounds(file), {});
  });

  it('a torn or foreign file bounds nothing and is removed', async () => {
    const file = join(dir, 'torn.json');
    for (const text of ['{"thinvolumes": "12', '[1,2]', 'null', '{"thinvolumes": 12}']) {
      writeFileSync(file, text);
      assert.deepEqual(await takeListBounds(file), {}, text);
      assert.equal(existsSync(file), false);
    }
  });
});
