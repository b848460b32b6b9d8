import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from '../../../src/kube/queue.ts';
import { until } from './harness.ts';

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
    q.stop();
  });
});
