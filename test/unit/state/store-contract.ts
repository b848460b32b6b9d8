import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { type DeviceRecord, type StateStore, StoreError } from '../../../src/state/types.ts';

export interface StoreHandle {
  store: StateStore;
  /** Called after each test; should close the store and remove anything it created. */
  cleanup(): Promise<void>;
}

export function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id, dmName: `dmthin-${id}`, kind: 'volume', deviceId: 1, sizeBytes: 1 << 30, state: 'Creating',
    meta: { name: id }, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-01T00:00:00.000Z', ...over,
  };
}

async function storeErrorKind(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StoreError, `expected StoreError, got ${String(err)}`);
  return err.kind;
}

function withoutRevision(r: DeviceRecord | undefined): Omit<DeviceRecord, 'revision'> | undefined {
  if (!r) return r;
  const { revision: _revision, ...rest } = r;
  return rest;
}

/** The behaviour every StateStore must have, run against a fresh store per test. */
export function storeContract(name: string, factory: () => Promise<StoreHandle>): void {
  describe(`StateStore contract: ${name}`, () => {
    let h: StoreHandle;
    let s: StateStore;
    beforeEach(async () => {
      h = await factory();
      s = h.store;
    });
    afterEach(async () => h.cleanup());

    it('creates, gets and lists records with a store-set revision', async () => {
      const created = await s.createDevice(device('vol-a', { origin: 'snap-x', faultyFrom: 'Creating' }));
      assert.equal(typeof created.revision, 'string');
      assert.deepEqual(withoutRevision(created), device('vol-a', { origin: 'snap-x', faultyFrom: 'Creating' }));
      assert.deepEqual(await s.getDevice('vol-a'), created);
      await s.createDevice(device('vol-b', { kind: 'snapshot' }));
      const list = await s.listDevices();
      assert.deepEqual(list.map((r) => r.id).sort(), ['vol-a', 'vol-b']);
      assert.equal(await s.getDevice('vol-missing'), undefined);
    });

    it('refuses to create an existing id', async () => {
      await s.createDevice(device('vol-a'));
      assert.equal(await storeErrorKind(s.createDevice(device('vol-a', { sizeBytes: 5 }))), 'exists');
      assert.equal((await s.getDevice('vol-a'))?.sizeBytes, 1 << 30);
    });

    it('rejects records that could not be read back', async () => {
      await assert.rejects(s.createDevice(device('vol-a', { state: 'Bogus' as 'Created' })), TypeError);
      await assert.rejects(s.createDevice({ ...device('vol-b'), deviceId: -1 }), TypeError);
      assert.deepEqual(await s.listDevices(), []);
      await s.createDevice(device('vol-c'));
      await assert.rejects(s.updateDevice('vol-c', (r) => { r.kind = 'nope' as 'volume'; }), TypeError);
      assert.equal((await s.getDevice('vol-c'))?.kind, 'volume');
    });

    it('updates in place or by returning a new record, changing the revision each time', async () => {
      const c = await s.createDevice(device('vol-a'));
      const u1 = await s.updateDevice('vol-a', (r) => { r.state = 'Created'; r.faultyFrom = undefined; });
      assert.equal(u1.state, 'Created');
      assert.notEqual(u1.revision, c.revision);
      const u2 = await s.updateDevice('vol-a', (r) => ({ ...r, meta: { ...r.meta, fsType: 'xfs' } }));
      assert.deepEqual(u2.meta, { name: 'vol-a', fsType: 'xfs' });
      assert.notEqual(u2.revision, u1.revision);
      assert.deepEqual(await s.getDevice('vol-a'), u2);
    });

    it('clears optional fields set to undefined', async () => {
      await s.createDevice(device('vol-a', { error: 'boom', faultyFrom: 'Removing' }));
      const u = await s.updateDevice('vol-a', (r) => { r.error = undefined; delete r.faultyFrom; });
      assert.equal('error' in u && u.error !== undefined, false);
      assert.equal(u.faultyFrom, undefined);
      assert.equal((await s.getDevice('vol-a'))?.error, undefined);
    });

    it('update of a missing record is not_found; a throwing mutation changes nothing', async () => {
      assert.equal(await storeErrorKind(s.updateDevice('vol-none', () => undefined)), 'not_found');
      const c = await s.createDevice(device('vol-a'));
      await assert.rejects(s.updateDevice('vol-a', (r) => { r.state = 'Faulty'; throw new Error('nope'); }), /nope/);
      assert.deepEqual(await s.getDevice('vol-a'), c);
    });

    it('a mutation cannot change the id', async () => {
      await s.createDevice(device('vol-a'));
      await assert.rejects(s.updateDevice('vol-a', (r) => ({ ...r, id: 'vol-b' })));
      assert.equal(await s.getDevice('vol-b'), undefined);
      assert.equal((await s.getDevice('vol-a'))?.id, 'vol-a');
    });

    it('callers cannot mutate stored records through inputs or results', async () => {
      const input = device('vol-a');
      const created = await s.createDevice(input);
      input.meta.name = 'changed-input';
      created.meta.name = 'changed-result';
      const got = await s.getDevice('vol-a');
      got!.state = 'Faulty';
      (await s.listDevices())[0]!.meta.extra = 'x';
      let kept: DeviceRecord | undefined;
      const updated = await s.updateDevice('vol-a', (r) => { kept = r; r.sizeBytes = 2; });
      kept!.sizeBytes = 99;
      updated.sizeBytes = 98;
      const now = await s.getDevice('vol-a');
      assert.equal(now?.meta.name, 'vol-a');
      assert.equal(now?.meta.extra, undefined);
      assert.equal(now?.state, 'Creating');
      assert.equal(now?.sizeBytes, 2);
    });

    it('delete is idempotent and the id can be reused', async () => {
      await s.deleteDevice('vol-none');
      await s.createDevice(device('vol-a'));
      await s.deleteDevice('vol-a');
      await s.deleteDevice('vol-a');
      assert.equal(await s.getDevice('vol-a'), undefined);
      assert.deepEqual(await s.listDevices(), []);
      const again = await s.createDevice(device('vol-a', { deviceId: 9 }));
      assert.equal(again.deviceId, 9);
    });

    it('concurrent updates of one record lose nothing', async () => {
      await s.createDevice(device('vol-a', { meta: { n: '0' } }));
      const N = 25;
      await Promise.all(Array.from({ length: N }, () =>
        s.updateDevice('vol-a', (r) => { r.meta.n = String(Number(r.meta.n) + 1); })));
      assert.equal((await s.getDevice('vol-a'))?.meta.n, String(N));
    });

    it('concurrent creates of one id: exactly one wins', async () => {
      const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => s.createDevice(device('vol-a', { deviceId: i }))));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as StoreError).kind, 'exists');
    });

    it('keeps a pool record with revisions', async () => {
      assert.equal(await s.getPool(), undefined);
      let seen: unknown = 'not called';
      const p1 = await s.updatePool((cur) => {
        seen = cur;
        return { name: 'pool0', transactionId: 1, updatedAt: 't1' };
      });
      assert.equal(seen, undefined);
      assert.equal(p1.transactionId, 1);
      const p2 = await s.updatePool((cur) => ({ ...cur!, transactionId: cur!.transactionId + 1, updatedAt: 't2' }));
      assert.equal(p2.transactionId, 2);
      assert.notEqual(p2.revision, p1.revision);
      assert.deepEqual(await s.getPool(), p2);
      (await s.getPool())!.transactionId = 50;
      assert.equal((await s.getPool())?.transactionId, 2);
      await assert.rejects(s.updatePool(() => ({ name: 'pool0', transactionId: -1, updatedAt: 't3' })), TypeError);
      assert.equal((await s.getPool())?.transactionId, 2);
    });
  });
}
