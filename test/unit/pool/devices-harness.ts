// What the Devices suites share: a fresh fake driver for each test and the helpers over it.
import { afterEach, beforeEach } from 'node:test';
import type { NewDevice } from '../../../src/pool/devices.ts';
import { ctx, fakeDriver, GiB, POOL, type FakeDriver, type FakeDriverOptions } from '../support/fake-driver.ts';

export const spec = (id: string, o: Partial<NewDevice> = {}): NewDevice => ({ id, dmName: `dm-${id}`, kind: 'volume', sizeBytes: GiB, meta: {}, ...o });
export const msgs = (fd: FakeDriver) => fd.dm.ops.filter((o) => o.op === 'message').map((o) => o.args[1]!);

/** Registers the per-test driver in the enclosing describe; `replace` swaps in one made with other options. */
export function perTestDriver() {
  const w = {
    fd: undefined as unknown as FakeDriver,
    async replace(opts: FakeDriverOptions): Promise<FakeDriver> {
      await w.fd.cleanup();
      w.fd = await fakeDriver(opts);
      return w.fd;
    },
    devices: () => w.fd.driver.devices,
    pool: () => w.fd.driver.pool,
    poolTx: async () => (await w.fd.dm.poolStatus(ctx, POOL)).transactionId,
  };
  beforeEach(async () => { w.fd = await fakeDriver(); });
  afterEach(() => w.fd.cleanup());
  return w;
}
