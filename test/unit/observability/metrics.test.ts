// The metric names and labels dashboards rely on: standard process metrics, one gauge per pool
// quantity (nothing that sums to nonsense), build_info, and the capacity the node offers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../../../src/observability/metrics.ts';
import { DRIVER_NAME, VERSION } from '../../../src/version.ts';
import { ctx, fakeDriver, GiB, POOL } from '../support/fake-driver.ts';

/** name{labels} value, for every sample of the exposition text. */
function samples(text: string): Map<string, number> {
  return new Map(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => {
    const i = l.lastIndexOf(' ');
    return [l.slice(0, i), Number(l.slice(i + 1))] as const;
  }));
}

describe('metrics', () => {
  it('process metrics carry the standard names, without the driver\'s prefix', async () => {
    const names = [...samples(await new Metrics({ processMetrics: true }).registry.metrics()).keys()];
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes']) {
      assert.ok(names.some((x) => x === n || x.startsWith(`${n}{`)), `${n} in ${names.slice(0, 8).join(', ')}...`);
    }
    assert.ok(!names.some((x) => x.startsWith('dmthin_csi_process_') || x.startsWith('dmthin_csi_nodejs_')));
  });

  it('build_info is 1 with the version and the driver name', async () => {
    const s = samples(await new Metrics().registry.metrics());
    assert.equal(s.get(`dmthin_csi_build_info{version="${VERSION}",driver="${DRIVER_NAME}",nodejs_version="${process.version}"}`), 1);
  });

  it('a pool reading sets one gauge per quantity, and the capacity GetCapacity reports', async (t) => {
    const fd = await fakeDriver({ dataBytes: 16 * GiB, overprovisionRatio: 2.5 });
    t.after(() => fd.cleanup());
    const h = await fd.driver.pool.health(ctx);
    const capacity = await fd.driver.pool.capacity(ctx, h);
    const s = samples(await fd.driver.metrics.registry.metrics());
    const g = (name: string) => s.get(`dmthin_csi_${name}{pool="${POOL}"}`);
    assert.equal(g('pool_data_size_bytes'), 16 * GiB);
    assert.equal(g('pool_data_used_bytes'), h.dataUsedBytes);
    assert.equal(g('pool_data_available_bytes'), 16 * GiB - h.dataUsedBytes);
    assert.equal(g('pool_metadata_size_bytes'), h.metadataTotalBytes);
    assert.equal(g('pool_metadata_used_bytes'), h.metadataUsedBytes);
    assert.equal(g('pool_capacity_bytes'), capacity);
    assert.equal(capacity, Math.floor((16 * GiB - h.dataUsedBytes) * 2.5), 'free space x the ratio');
    assert.ok(![...s.keys()].some((k) => k.startsWith('dmthin_csi_pool_bytes')), 'the old mixed gauge is gone');
  });
});
