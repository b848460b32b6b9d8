import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from '../../../src/kube/queue.ts';
import { until } from './harness.ts';
import { sleep } from '../../../src/system/delay.ts';

describe('WorkQueue', () => {
  it('collapses repeated keys, reruns a key changed while running, retries failures with backoff', async () => {
    const seen: string[] = [];
    let failA = 2;
    let release: (() => void) | undefined;
    const q = new WorkQueue(async (key) => {
      seen.push(key);
      if (key === 'slow' && !release) await new Promise<void>((r) => { release = r; });
      if (key === 'a' && failA-- > 0) throw new Error('transient');
    }, { retryBaseMs: 5, retryMaxMs: 20, onError: () => undefined });
    q.add('slow');
    await until(() => release !== undefined, 'slow running');
    q.add('slow'); // changed while running: runs once more, after
    q.add('b'); q.add('b'); q.add('b');
    release!();
    await q.idle();
    assert.deepEqual(seen, ['slow', 'slow', 'b']);
    q.add('a');
    await until(() => seen.filter((k) => k === 'a').length === 3, 'a retried twice');
    await q.idle();
    assert.deepEqual(q.retrying, []);
    await q.stop();
  });

  it('a paused queue collects keys (collapsing repeats) and runs them only after resume', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (key) => { seen.push(key); }, { retryBaseMs: 5, retryMaxMs: 20, onError: () => undefined });
    q.pause();
    q.add('a'); q.add('b'); q.add('a');
    await sleep(20);
    assert.deepEqual(seen, []);
    q.resume();
    await q.idle();
    assert.deepEqual(seen, ['a', 'b']);
    await q.stop();
  });

  it('stop lets the key in hand finish, drops the waiting ones and takes no more', async () => {
    const seen: string[] = [];
    let release: (() => void) | undefined;
    const q = new WorkQueue(async (key) => {
      if (key === 'slow') await new Promise<void>((r) => { release = r; });
      seen.push(key);
    }, { retryBaseMs: 5, retryMaxMs: 20, onError: () => undefined });
    q.add('slow');
    q.add('waiting');
    await until(() => release !== undefined, 'slow running');
    let stopped = false;
    const stopping = q.stop().then(() => { stopped = true; });
    await sleep(20);
    assert.equal(stopped, false, 'stop waits for the running key');
    release!();
    await stopping;
    q.add('late');
    await sleep(20);
    assert.deepEqual(seen, ['slow']);
  });
});
