import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ThinPoolStatus } from '../../../src/devmapper/types.ts';
import { allocatableBytes, assessPool, DEFAULT_THRESHOLDS } from '../../../src/pool/health.ts';

const status = (o: Partial<ThinPoolStatus> = {}): ThinPoolStatus => ({
  lengthSectors: 1000 * 128, transactionId: 3, usedMetadataBlocks: 10, totalMetadataBlocks: 1000,
  usedDataBlocks: 100, totalDataBlocks: 1000, mode: 'rw', discardPassdown: true, errorIfNoSpace: false,
  needsCheck: false, metadataLowWatermark: undefined, ...o,
});

describe('assessPool', () => {
  it('ok below the thresholds, with byte totals', () => {
    const h = assessPool(status(), 128);
    assert.equal(h.condition, 'ok');
    assert.equal(h.writable, true);
    assert.deepEqual(h.reasons, []);
    assert.equal(h.dataTotalBytes, 1000 * 65536);
    assert.equal(h.dataUsedBytes, 100 * 65536);
    assert.equal(h.metadataTotalBytes, 1000 * 4096);
    assert.equal(h.transactionId, 3);
  });
  it('low_space at exactly the data threshold, not just below it', () => {
    assert.equal(assessPool(status({ usedDataBlocks: 949 }), 128).condition, 'ok');
    const h = assessPool(status({ usedDataBlocks: 950 }), 128);
    assert.equal(h.condition, 'low_space');
    assert.equal(h.writable, false);
    assert.match(h.reasons[0]!, /data is 95\.0% used/);
  });
  it('low_space at the metadata threshold', () => {
    assert.equal(assessPool(status({ usedMetadataBlocks: 899 }), 128).condition, 'ok');
    const h = assessPool(status({ usedMetadataBlocks: 900 }), 128);
    assert.equal(h.condition, 'low_space');
    assert.match(h.reasons.join(), /metadata is 90\.0% used/);
  });
  it('custom thresholds are honoured', () => {
    assert.equal(assessPool(status({ usedDataBlocks: 500 }), 128, { lowDataPercent: 50, lowMetadataPercent: 90 }).condition, 'low_space');
    assert.equal(DEFAULT_THRESHOLDS.lowDataPercent, 95);
  });
  it('an empty pool (zero totals) counts as full', () => {
    assert.equal(assessPool(status({ totalDataBlocks: 0, usedDataBlocks: 0 }), 128).writable, false);
  });
  it('ro, out_of_data_space, needs_check and fail are not writable, each with its own condition', () => {
    assert.equal(assessPool(status({ mode: 'ro' }), 128).condition, 'read_only');
    assert.equal(assessPool(status({ mode: 'out_of_data_space' }), 128).condition, 'out_of_space');
    assert.equal(assessPool(status({ needsCheck: true }), 128).condition, 'needs_check');
    assert.equal(assessPool(status({ mode: 'fail' }), 128).condition, 'failed');
    for (const o of [{ mode: 'ro' as const }, { mode: 'out_of_data_space' as const }, { needsCheck: true }, { mode: 'fail' as const }]) {
      const h = assessPool(status(o), 128);
      assert.equal(h.writable, false);
      assert.ok(h.reasons.length > 0);
    }
  });
  it('fail wins over needs_check, needs_check over ro', () => {
    assert.equal(assessPool(status({ mode: 'fail', needsCheck: true }), 128).condition, 'failed');
    assert.equal(assessPool(status({ mode: 'ro', needsCheck: true }), 128).condition, 'needs_check');
  });
});

describe('allocatableBytes', () => {
  it('free space times the ratio, zero when not writable', () => {
    const h = assessPool(status(), 128);
    assert.equal(allocatableBytes(h, 1), 900 * 65536);
    assert.equal(allocatableBytes(h, 2.5), Math.floor(900 * 65536 * 2.5));
    assert.equal(allocatableBytes(assessPool(status({ mode: 'ro' }), 128), 10), 0);
  });
});
