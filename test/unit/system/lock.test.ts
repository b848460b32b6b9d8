import assert from 'node:assert/strict';
import { it } from 'node:test';
import { KeyedMutex } from '../../../src/system/lock.ts';

it('KeyedMutex.tryRun runs when the key is free and refuses, without waiting, while it is held', async () => {
  const locks = new KeyedMutex();
  const ran: string[] = [];
  assert.equal(await locks.tryRun('a', async () => { ran.push('free'); }), true);
  let release!: () => void;
  const holder = locks.run('a', () => new Promise<void>((r) => { release = r; }));
  assert.equal(await locks.tryRun('a', async () => { ran.push('held'); }), false);
  assert.equal(await locks.tryRun('b', async () => { ran.push('other key'); }), true);
  release();
  await holder;
  assert.equal(await locks.tryRun('a', async () => { ran.push('released'); }), true);
  assert.deepEqual(ran, ['free', 'other key', 'released']);
  assert.equal(locks.size, 0, 'no entry is kept for keys nobody holds');
});
