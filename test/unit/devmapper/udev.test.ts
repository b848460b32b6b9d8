// Whether udev makes the /dev/mapper nodes: both device-mapper backends ask this one function,
// so dmsetup and the ioctls agree (DM_DISABLE_UDEV included) on who makes a node.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { udevManagesNodes } from '../../../src/devmapper/udev.ts';

describe('udevManagesNodes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmthin-udev-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const control = join(dir, 'control');
  const missing = join(dir, 'no-control');
  writeFileSync(control, '');

  it('a forced answer is the answer, whatever the socket and the environment say', async () => {
    assert.equal(await udevManagesNodes(true, missing, { DM_DISABLE_UDEV: '1' }), true);
    assert.equal(await udevManagesNodes(false, control, {}), false);
  });

  it("'auto' follows the presence of udev's control socket", async () => {
    assert.equal(await udevManagesNodes('auto', control, {}), true);
    assert.equal(await udevManagesNodes('auto', missing, {}), false);
  });

  it("'auto' with DM_DISABLE_UDEV set means no udev, even with the socket there", async () => {
    assert.equal(await udevManagesNodes('auto', control, { DM_DISABLE_UDEV: '1' }), false);
  });
});
