import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeDeviceMapper } from '../../../doubles/devmapper/fake.ts';
import { isDmError } from '../../../../src/devmapper/types.ts';
import { background as ctx } from '../../../../src/system/context.ts';

const BLOCK = 64 * 1024;
const src = { pool: 'pool', metadataDev: '/dev/fake-meta' };

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('FakeThinTools: thin_dump and thin_delta over the fake pool', () => {
  async function pool() {
    const dm = new FakeDeviceMapper();
    await dm.create(ctx, 'pool', '0 2097152 thin-pool /dev/fake-meta /dev/fake-data 128 32768');
    await dm.message(ctx, 'pool', 'create_thin 0');
    await dm.create(ctx, 'thin', '0 2097152 thin /dev/mapper/pool 0');
    return dm;
  }

  it('reads the maps as they were at reserve_metadata_snap, and nothing without one', async () => {
    const dm = await pool();
    const tools = dm.metadataReader();
    dm.write('thin', BLOCK, 0);
    await assert.rejects(collect(tools.mappings(ctx, src, 0)), (e) => isDmError(e, 'no_data'));
    await dm.message(ctx, 'pool', 'reserve_metadata_snap');
    dm.write('thin', BLOCK, 5 * BLOCK); // after the reserve: not in the snapshot
    assert.deepEqual(await collect(tools.mappings(ctx, src, 0)), [{ begin: 0, length: 1 }]);
    await assert.rejects(collect(tools.mappings(ctx, src, 9)), (e) => isDmError(e, 'not_found'));
    await dm.message(ctx, 'pool', 'release_metadata_snap');
    await dm.message(ctx, 'pool', 'reserve_metadata_snap');
    assert.deepEqual(await collect(tools.mappings(ctx, src, 0)), [{ begin: 0, length: 1 }, { begin: 5, length: 1 }]);
  });

  it('delta names shared, rewritten and one-sided runs; a discard unmaps only the whole blocks it covers', async () => {
    const dm = await pool();
    dm.write('thin', 4 * BLOCK, 0);
    await dm.suspend(ctx, 'thin');
    await dm.message(ctx, 'pool', 'create_snap 1 0');
    await dm.resume(ctx, 'thin');
    dm.write('thin', 100, BLOCK); // block 1 copied on write
    dm.discard('thin', BLOCK + BLOCK / 2, 2 * BLOCK); // half of block 1 (kept), all of block 2
    dm.write('thin', BLOCK, 9 * BLOCK);
    await dm.message(ctx, 'pool', 'reserve_metadata_snap');
    assert.deepEqual(await collect(dm.metadataReader().delta(ctx, src, 1, 0)), [
      { kind: 'same', begin: 0, length: 1 }, { kind: 'different', begin: 1, length: 1 }, { kind: 'left_only', begin: 2, length: 1 },
      { kind: 'same', begin: 3, length: 1 }, { kind: 'right_only', begin: 9, length: 1 },
    ]);
  });
});
