import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeDeviceMapper } from '../../../doubles/devmapper/fake.ts';
import { parseInfoRows } from '../../../../src/devmapper/parse.ts';
import { DmError, type DmDeviceInfo } from '../../../../src/devmapper/types.ts';
import { background as ctx } from '../../../../src/system/context.ts';
import { recorded, recordedFailure } from '../../devmapper/fixtures.ts';

// The fake set up like test/vm/smoke.sh's recording run must print what the kernel printed.

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;

function kindOfSync(fn: () => void): string {
  try { fn(); } catch (err) { return err instanceof DmError ? err.kind : 'other'; }
  assert.fail('expected a throw');
}

describe('FakeDeviceMapper against recorded kernel output', () => {
  const line = (file: string): string => recorded(file).replace(/\n$/, '');
  const SMOKE_POOL = '0 2097152 thin-pool 7:0 7:1 128 32768 1 skip_block_zeroing';

  /** The smoke test's pool and thin volume (id 0), with mkfs-like usage: 145 blocks at the start, 1 at the end. */
  async function smoke(): Promise<FakeDeviceMapper> {
    const dm = new FakeDeviceMapper();
    await dm.create(ctx, 'smoke-pool', SMOKE_POOL);
    await dm.message(ctx, 'smoke-pool', 'create_thin 0');
    await dm.create(ctx, 'smoke-thin', '0 2097152 thin /dev/mapper/smoke-pool 0', { uuid: 'SMOKE-THIN-0000' });
    return dm;
  }

  it('prints the same status and table lines for the same pool', async () => {
    const dm = new FakeDeviceMapper();
    await dm.create(ctx, 'smoke-pool', SMOKE_POOL);
    assert.equal(dm.statusLine('smoke-pool'), line('status-pool-fresh.txt'));
    assert.equal(dm.tableLine('smoke-pool'), line('table-pool.txt'));
    await dm.message(ctx, 'smoke-pool', 'create_thin 0');
    await dm.create(ctx, 'smoke-thin', '0 2097152 thin /dev/mapper/smoke-pool 0', { uuid: 'SMOKE-THIN-0000' });
    assert.equal(dm.tableLine('smoke-thin'), line('table-thin.txt'));
    dm.write('smoke-thin', 145 * BLOCK);
    dm.write('smoke-thin', BLOCK, 1024 * MiB - BLOCK);
    assert.equal(dm.statusLine('smoke-thin'), line('status-thin.txt'));
    assert.equal(dm.statusLine('smoke-pool'), line('status-pool.txt'));
  });

  it('reports the same info rows (event counters aside)', async () => {
    const dm = await smoke();
    dm.adjustOpen('/dev/mapper/smoke-thin', 1); // the recording had it mounted
    const noEvents = (rows: DmDeviceInfo[]): DmDeviceInfo[] => rows.map(({ events: _, ...r }) => r);
    assert.deepEqual(noEvents(await dm.infoAll(ctx)), noEvents(parseInfoRows(recorded('info-c-all.txt'))));
    await dm.suspend(ctx, 'smoke-thin');
    assert.deepEqual(noEvents([await dm.info(ctx, 'smoke-thin') as DmDeviceInfo]), noEvents(parseInfoRows(recorded('info-c-thin-suspended.txt'))));
  });

  it('fills a small error_if_no_space pool the way the kernel did', async () => {
    const dm = new FakeDeviceMapper({ metadataBlocks: 2048 });
    await dm.create(ctx, 'smoke-full-pool', '0 32768 thin-pool 7:2 7:3 128 16 1 error_if_no_space');
    assert.equal(dm.statusLine('smoke-full-pool'), line('status-full-pool-empty.txt'));
    assert.equal(dm.tableLine('smoke-full-pool'), line('table-full-pool.txt'));
    await dm.message(ctx, 'smoke-full-pool', 'create_thin 0');
    await dm.create(ctx, 'smoke-full-thin', '0 131072 thin /dev/mapper/smoke-full-pool 0');
    assert.equal(kindOfSync(() => dm.write('smoke-full-thin', 32 * MiB)), 'no_space');
    assert.equal(dm.statusLine('smoke-full-thin'), line('status-full-thin.txt'));
    const noMeta = (s: string): string => s.replace(/ \d+\/2048 /, ' M/2048 ');
    assert.equal(noMeta(dm.statusLine('smoke-full-pool')), noMeta(line('status-full-pool.txt')));
    assert.equal(recordedFailure('ok-create-thin-full-pool.txt').exit, 0);
    await dm.message(ctx, 'smoke-full-pool', 'create_thin 1');
    await dm.remove(ctx, 'smoke-full-thin');
    await dm.message(ctx, 'smoke-full-pool', 'delete 0');
    assert.equal(dm.statusLine('smoke-full-pool'), line('status-full-pool-after-delete.txt'));
  });

  it('fails with the stderr dmsetup printed for the same mistakes', async () => {
    const dm = await smoke();
    dm.adjustOpen('/dev/mapper/smoke-thin', 1);
    await dm.suspend(ctx, 'smoke-thin');
    await dm.message(ctx, 'smoke-pool', 'create_snap 1 0');
    await dm.resume(ctx, 'smoke-thin');
    await dm.create(ctx, 'smoke-snap', '0 2097152 thin /dev/mapper/smoke-pool 1');
    const msg = (m: string) => () => dm.message(ctx, 'smoke-pool', m);
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['err-create-thin-exists.txt', msg('create_thin 0')],
      ['err-create-snap-exists.txt', msg('create_snap 1 0')],
      ['err-create-snap-missing-origin.txt', msg('create_snap 8 42')],
      ['err-delete-missing.txt', msg('delete 99')],
      ['err-delete-active.txt', msg('delete 0')],
      ['err-set-transaction-id-mismatch.txt', msg('set_transaction_id 5 6')],
      ['err-message-unknown.txt', msg('frobnicate 1')],
      ['err-message-nonexistent.txt', () => dm.message(ctx, 'nonexistent', 'create_thin 7')],
      ['err-create-name-exists.txt', () => dm.create(ctx, 'smoke-thin', '0 2097152 thin /dev/mapper/smoke-pool 0')],
      ['err-create-thin-missing-id.txt', () => dm.create(ctx, 'smoke-missing', '0 2097152 thin /dev/mapper/smoke-pool 77')],
      ['err-remove-busy.txt', () => dm.remove(ctx, 'smoke-thin')],
      ['err-remove-pool-busy.txt', () => dm.remove(ctx, 'smoke-pool')],
      ['err-remove-nonexistent.txt', () => dm.remove(ctx, 'nonexistent')],
      ['err-suspend-nonexistent.txt', () => dm.suspend(ctx, 'nonexistent')],
      ['err-resume-nonexistent.txt', () => dm.resume(ctx, 'nonexistent')],
      ['err-status-nonexistent.txt', () => dm.thinStatus(ctx, 'nonexistent')],
      ['err-table-nonexistent.txt', () => dm.thinTable(ctx, 'nonexistent')],
    ];
    for (const [file, call] of cases) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof DmError, `${file}: expected DmError, got ${String(err)}`);
      assert.equal(err.stderr, recordedFailure(file).stderr.trimEnd(), file);
    }
    assert.equal(await dm.info(ctx, 'nonexistent'), undefined);
  });
});
