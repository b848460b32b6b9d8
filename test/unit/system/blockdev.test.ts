// Device numbers and block-device sizes read from the kernel's own tables, no process spawned.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { blockDeviceBytes, devNo, nodeDevNo } from '../../../src/system/blockdev.ts';

function someBlockNode(): { node: string; dev: string } {
  for (const name of readdirSync('/dev')) {
    try {
      const st = statSync(join('/dev', name), { bigint: true });
      if (st.isBlockDevice()) return { node: join('/dev', name), dev: devNo(st.rdev) };
    } catch { /* unreadable entry */ }
  }
  throw new Error('no block device node under /dev: this test needs one (e.g. /dev/loop0)');
}

describe('devNo', () => {
  it('decodes the kernel encoding of st_rdev, large numbers included', () => {
    assert.equal(devNo(0x0700n), '7:0');
    assert.equal(devNo((253n << 8n) | 5n), '253:5');
    // minor 0x12345: low 8 bits in bits 0-7, the rest from bit 20 up
    assert.equal(devNo((253n << 8n) | 0x45n | (0x123n << 20n)), `253:${0x12345}`);
    // major 0x1fff: low 12 bits in bits 8-19, the rest from bit 44 up
    assert.equal(devNo((0xfffn << 8n) | (0x1n << 44n)), `${0x1fff}:0`);
  });
  it('agrees with the kernel on a real node (/dev/null is 1:3)', () => {
    assert.equal(devNo(statSync('/dev/null', { bigint: true }).rdev), '1:3');
  });
});

describe('nodeDevNo', () => {
  it('answers only for block devices', async () => {
    assert.equal(await nodeDevNo('/dev/null'), undefined, 'a character device');
    assert.equal(await nodeDevNo('/dev/mapper/no-such-device-here'), undefined);
    const b = someBlockNode();
    assert.equal(await nodeDevNo(b.node), b.dev);
  });
});

describe('blockDeviceBytes', () => {
  const sys = mkdtempSync(join(tmpdir(), 'dmthin-blockdev-'));
  after(() => rmSync(sys, { recursive: true, force: true }));
  const b = someBlockNode();

  it('reads the size in 512-byte sectors of the node\'s own device number', async () => {
    mkdirSync(join(sys, 'dev/block', b.dev), { recursive: true });
    writeFileSync(join(sys, 'dev/block', b.dev, 'size'), '6291456\n');
    assert.equal(await blockDeviceBytes(b.node, sys), 3 * 1024 ** 3);
  });
  it('undefined when sysfs cannot tell: no entry, or text that is no count', async () => {
    assert.equal(await blockDeviceBytes(b.node, join(sys, 'absent')), undefined);
    writeFileSync(join(sys, 'dev/block', b.dev, 'size'), 'garbage\n');
    assert.equal(await blockDeviceBytes(b.node, sys), undefined);
  });
  it('a node that is missing or no block device is an error with its code', async () => {
    await assert.rejects(blockDeviceBytes('/dev/null', sys), { code: 'ENOTBLK' });
    await assert.rejects(blockDeviceBytes(join(sys, 'no-such-node'), sys), { code: 'ENOENT' });
  });
});
