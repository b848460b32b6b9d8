// doctor's and status's view of a file pool's backing filesystem: the same figure capacity uses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBacking } from '../../../src/cli/doctor-backing.ts';
import { collectStatus, formatPool, type Runner } from '../../../src/cli/status.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { FakeBackingFs } from '../../doubles/system/fake-backing.ts';

const MiB = 1024 * 1024;
// 1 GiB of data in 64 KiB blocks, 1024 of them (64 MiB) used.
const POOL_STATUS = '0 2097152 thin-pool 7 280/262144 1024/16384 - rw discard_passdown queue_if_no_space - 1024';
const POOL_TABLE = '0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing';
const runner: Runner = async (command, args) => {
  const key = [command, ...args].join(' ');
  if (key === 'dmsetup status p') return { stdout: POOL_STATUS, stderr: '' };
  if (key === 'dmsetup table p') return { stdout: POOL_TABLE, stderr: '' };
  throw new Error(`unexpected ${key}`);
};

async function smallFs(freeBytes: number, metadataAllocated = true): Promise<FakeBackingFs> {
  const fs = new FakeBackingFs(freeBytes + 64 * MiB + 16 * MiB);
  fs.addFile('/var/lib/dmthin-csi/pool/data.img', 1024 * MiB, '7:0');
  fs.addFile('/var/lib/dmthin-csi/pool/metadata.img', 16 * MiB, '7:1');
  fs.write('/var/lib/dmthin-csi/pool/data.img', 64 * MiB);
  if (metadataAllocated) await fs.allocate(ctx, '/var/lib/dmthin-csi/pool/metadata.img');
  else fs.consume(16 * MiB);
  return fs;
}

describe('doctor checkBacking', () => {
  it('warns when the filesystem cannot hold the whole data file, with what the pool can still take', async () => {
    const r = await checkBacking(runner, await smallFs(200 * MiB), 'p');
    assert.deepEqual(r.map((c) => c.level), ['warn']);
    assert.match(r[0]!.detail, /has 209715200 bytes available, but .* may still grow by 1006632960.*; the pool can still take 200Mi$/);
    assert.match(r[0]!.fix!, /configure a smaller pool/);
  });
  it('ok when it can; a metadata file with holes fails', async () => {
    const ok = await checkBacking(runner, await smallFs(2048 * MiB), 'p');
    assert.deepEqual(ok.map((c) => c.level), ['ok']);
    assert.match(ok[0]!.detail, /64Mi of 1Gi allocated, filesystem has 2Gi available; the pool can still take 960Mi/);
    const holes = await checkBacking(runner, await smallFs(2048 * MiB, false), 'p');
    assert.deepEqual(holes.map((c) => `${c.level} ${c.name}`), ['ok pool p backing', 'fail pool p backing metadata']);
  });
  it('nothing for a pool on block devices', async () => {
    assert.deepEqual(await checkBacking(runner, new FakeBackingFs(0), 'p'), []);
  });
});

describe('status with a file pool', () => {
  it('prints the room the pool has left: the figure capacity uses', async () => {
    const report = await collectStatus(runner, '/nonexistent-dmthin', 'p', async () => ({ devices: [], problems: [] }), await smallFs(200 * MiB));
    assert.match(formatPool(report.pool).join('\n'), /room {6}200Mi more data; file \/var\/lib\/dmthin-csi\/pool\/data\.img: 64Mi of 1Gi allocated, filesystem 200Mi available/);
    assert.match(formatPool(report.pool).join('\n'), /WARNING: the filesystem under .* has 209715200 bytes available/);
  });
});
