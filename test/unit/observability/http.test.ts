// The one metrics endpoint every mode serves: /metrics, /healthz from the mode's readiness, and
// the devices gauge counted from the store it is given.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { refreshDeviceGauge, serveMetrics } from '../../../src/observability/http.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { Metrics } from '../../../src/observability/metrics.ts';

const records = (...rs: { kind: string; state: string }[]) => ({ listDevices: async () => rs });

describe('serveMetrics', () => {
  it('counts the devices by kind and state, afresh each time', async () => {
    const metrics = new Metrics();
    await refreshDeviceGauge(records({ kind: 'volume', state: 'Activated' }, { kind: 'volume', state: 'Activated' }, { kind: 'snapshot', state: 'Created' }), metrics);
    const values = async () => (await metrics.devices.get()).values.map((v) => `${v.labels.kind}/${v.labels.state}=${v.value}`).sort();
    assert.deepEqual(await values(), ['snapshot/Created=1', 'volume/Activated=2']);
    await refreshDeviceGauge(records({ kind: 'volume', state: 'Faulty' }), metrics);
    assert.deepEqual(await values(), ['volume/Faulty=1'], 'states no record is in any more are gone');
  });

  it('serves /metrics and /healthz at the address, and nothing without one', async () => {
    let healthy = true;
    const metrics = new Metrics();
    const none = await serveMetrics({ address: undefined, metrics, log: silentLogger(), healthy: async () => healthy, devices: records() });
    assert.equal(none.server, undefined);
    none.stop();
    const ep = await serveMetrics({ address: '127.0.0.1:0', metrics, log: silentLogger(), healthy: async () => healthy });
    try {
      const base = `http://127.0.0.1:${(ep.server!.address() as AddressInfo).port}`;
      const scrape = await fetch(`${base}/metrics`);
      assert.equal(scrape.status, 200);
      assert.match(await scrape.text(), /dmthin_csi_devices/);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      healthy = false;
      assert.equal((await fetch(`${base}/healthz`)).status, 503);
      assert.equal((await fetch(`${base}/other`)).status, 404);
    } finally {
      ep.stop();
    }
    assert.equal(ep.server!.listening, false, 'stop closes the server');
  });
});
