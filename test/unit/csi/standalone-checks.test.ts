// Standalone mode checks its pool periodically while it serves, as the node agent's resync does.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { periodically, serveDriver } from '../../../src/driver.ts';
import { silentLogger } from '../../../src/observability/log.ts';
import { sleep } from '../../../src/system/delay.ts';
import { ctx, fakeDriver, GiB, POOL, type FakeDriver } from '../support/fake-driver.ts';

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (const t0 = Date.now(); !(await cond()); await sleep(10)) {
    if (Date.now() - t0 > 5_000) assert.fail(`timed out waiting for ${what}`);
  }
}

describe('periodically', () => {
  it('runs now and again after each run ends, never two at once, and nothing after stop', async () => {
    let runs = 0;
    let running = 0;
    let overlap = false;
    let release: (() => void) | undefined;
    const stop = periodically(async () => {
      runs++;
      overlap ||= running > 0;
      running++;
      if (runs === 2) await new Promise<void>((r) => { release = r; }); // the 2nd overruns many intervals
      running--;
    }, 5);
    assert.equal(runs, 1, 'the first run starts at once');
    await until(async () => release !== undefined, 'the second run');
    await sleep(50);
    assert.equal(runs, 2, 'no run starts while one is in progress');
    release!();
    await until(async () => runs >= 4, 'runs after the slow one');
    const stopping = stop();
    const at = runs;
    await stopping;
    await sleep(30);
    assert.equal(runs, at, 'stop ends the series');
    assert.equal(overlap, false);
  });
});

describe('standalone serving', () => {
  let fd: FakeDriver;
  afterEach(() => fd.cleanup());

  it('finds a device deleted behind its back in a later check, not only in the one after the start', async () => {
    fd = await fakeDriver();
    const spec = (id: string) => ({ id, dmName: `dm-${id}`, kind: 'volume' as const, sizeBytes: GiB, meta: {} });
    const a = await fd.driver.devices.create(ctx, spec('a'));
    const b = await fd.driver.devices.create(ctx, spec('b'));
    const running = await serveDriver(fd.cfg, fd.driver, silentLogger(), { poolCheckMs: 20 });
    try {
      await fd.dm.message(ctx, POOL, `delete ${a.deviceId}`);
      await until(async () => (await fd.store.getDevice('a'))?.state === 'Faulty', 'the first vanished device to turn Faulty');
      await fd.dm.message(ctx, POOL, `delete ${b.deviceId}`);
      await until(async () => (await fd.store.getDevice('b'))?.state === 'Faulty', 'the second vanished device to turn Faulty');
    } finally {
      await running.stopChecks();
      await new Promise<void>((resolve) => running.grpc.tryShutdown(() => resolve()));
    }
  });
});
