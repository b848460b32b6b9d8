import assert from 'node:assert/strict';
import { it } from 'node:test';
import { KeyedMutex, Semaphore } from '../../../src/system/lock.ts';

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

it('KeyedMutex.idle waits for queued work, failed or not, and for work queued meanwhile', async () => {
  const locks = new KeyedMutex();
  const done: string[] = [];
  let release!: () => void;
  const first = locks.run('a', () => new Promise<void>((r) => { release = r; }));
  const failing = locks.run('a', async () => { done.push('a2'); throw new Error('boom'); });
  const idle = locks.idle().then(() => done.push('idle'));
  await new Promise((r) => setImmediate(r));
  void locks.run('b', async () => { done.push('b'); });
  release();
  await first;
  await assert.rejects(failing, /boom/);
  await idle;
  assert.deepEqual(done, ['b', 'a2', 'idle']);
  assert.equal(locks.size, 0);
});

it('Semaphore lets at most `limit` run at once and the rest in arrival order', async () => {
  const sem = new Semaphore(2);
  const order: string[] = [];
  let running = 0;
  let peak = 0;
  const gates = new Map<string, () => void>();
  const job = (name: string) => sem.run(async () => {
    running++;
    peak = Math.max(peak, running);
    order.push(name);
    await new Promise<void>((r) => gates.set(name, r));
    running--;
  });
  const all = ['a', 'b', 'c', 'd'].map(job);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['a', 'b']);
  assert.equal(sem.waiting, 2);
  gates.get('b')!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['a', 'b', 'c']);
  gates.get('a')!();
  await new Promise((r) => setImmediate(r));
  gates.get('c')!();
  await new Promise((r) => setImmediate(r));
  gates.get('d')!();
  await Promise.all(all);
  assert.deepEqual(order, ['a', 'b', 'c', 'd']);
  assert.equal(peak, 2);
  assert.equal(sem.inFlight, 0);
  await assert.rejects(sem.run(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(sem.inFlight, 0, 'a failure gives its slot back');
});
