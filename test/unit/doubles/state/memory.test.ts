import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../../doubles/state/memory.ts';
import { StoreError } from '../../../../src/state/types.ts';
import { device, storeContract } from '../../state/store-contract.ts';

storeContract('MemoryStore', async () => {
  const store = new MemoryStore();
  return { store, cleanup: () => store.close() };
});

describe('MemoryStore specifics', () => {
  it('re-runs the mutation after a lost compare-and-swap', async () => {
    const s = new MemoryStore();
    await s.createDevice(device('vol-a'));
    s.failNextWrites(2);
    let runs = 0;
    const u = await s.updateDevice('vol-a', (r) => { runs++; r.state = 'Created'; });
    assert.equal(runs, 3);
    assert.equal(u.state, 'Created');
  });

  it('gives up with conflict when every write loses', async () => {
    const s = new MemoryStore();
    await s.createDevice(device('vol-a'));
    s.failNextWrites(1000);
    await assert.rejects(s.updateDevice('vol-a', () => undefined), (e: unknown) => e instanceof StoreError && e.kind === 'conflict');
  });

  it('reports not_found when the record is deleted while an update is in flight', async () => {
    const s = new MemoryStore();
    await s.createDevice(device('vol-a'));
    const pending = s.updateDevice('vol-a', (r) => { r.state = 'Created'; });
    await s.deleteDevice('vol-a');
    await assert.rejects(pending, (e: unknown) => e instanceof StoreError && e.kind === 'not_found');
    assert.equal(await s.getDevice('vol-a'), undefined);
  });

  it('refuses use after close', async () => {
    const s = new MemoryStore();
    await s.close();
    await assert.rejects(s.listDevices(), (e: unknown) => e instanceof StoreError && e.kind === 'io');
  });
});
