// The kube test double's watch streams, driven by client-node's Watch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Watch } from '@kubernetes/client-node';
import { startApiDouble } from '../../../doubles/kube-api/index.ts';
import type { ApiDouble } from '../../../doubles/kube-api/index.ts';
import { DMTHIN_RESOURCES, GROUP, TV, VERSION, fileDouble, merge, thinVolume, waitFor } from './helpers.ts';

interface Obj { kind?: string; code?: number; reason?: string; metadata: { name: string; resourceVersion: string } }
type Ev = [string, Obj];
const PATH = `/apis/${GROUP}/${VERSION}/thinvolumes`;

interface Session { events: Ev[]; done: () => boolean; err: () => unknown; abort: () => void }

async function open(d: ApiDouble, query: Record<string, string>): Promise<Session> {
  const events: Ev[] = [];
  let finished = false;
  let error: unknown;
  const ctl = await new Watch(d.kubeConfig()).watch(PATH, query, (t: string, o: Obj) => events.push([t, o]), (e: unknown) => {
    finished = true;
    error = e;
  });
  return { events, done: () => finished, err: () => error, abort: () => ctl.abort() };
}

const summary = (evs: Ev[]): string[] => evs.map(([t, o]) => `${t} ${o.metadata.name}`);

const { d, api } = await fileDouble();

describe('kube double: watch', () => {

  it('delivers ADDED / MODIFIED / DELETED after the given resourceVersion, with selector transitions', async () => {
    await api.createClusterCustomObject({ ...TV, body: thinVolume('before', { app: 'x' }) });
    const list = (await api.listClusterCustomObject({ ...TV })) as { metadata: { resourceVersion: string } };
    const all = await open(d, { resourceVersion: list.metadata.resourceVersion });
    const sel = await open(d, { resourceVersion: list.metadata.resourceVersion, labelSelector: 'app=x' });
    try {
      await api.createClusterCustomObject({ ...TV, body: thinVolume('w1', { app: 'y' }) });
      await api.patchClusterCustomObject({ ...TV, name: 'w1', body: { metadata: { labels: { app: 'x' } } } }, merge);
      await api.patchClusterCustomObject({ ...TV, name: 'w1', body: { spec: { sizeBytes: 3 } } }, merge);
      await api.patchClusterCustomObject({ ...TV, name: 'w1', body: { metadata: { labels: { app: 'z' } } } }, merge);
      await api.deleteClusterCustomObject({ ...TV, name: 'w1' });
      await waitFor(() => all.events.length >= 5 && sel.events.length >= 3, 'events');
      assert.deepEqual(summary(all.events), ['ADDED w1', 'MODIFIED w1', 'MODIFIED w1', 'MODIFIED w1', 'DELETED w1']);
      // Selector transitions like the real watch cache: in → ADDED, out → DELETED.
      assert.deepEqual(summary(sel.events), ['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
      const rvs = all.events.map(([, o]) => Number(o.metadata.resourceVersion));
      assert.deepEqual(rvs, [...rvs].sort((a, b) => a - b));
      assert.equal(all.events[0]?.[1].kind, 'ThinVolume');
    } finally {
      all.abort();
      sel.abort();
    }
  });

  it('replays history when resuming from an older resourceVersion', async () => {
    const rv = d.resourceVersion();
    await api.createClusterCustomObject({ ...TV, body: thinVolume('r1') });
    await api.createClusterCustomObject({ ...TV, body: thinVolume('r2') });
    const s = await open(d, { resourceVersion: rv });
    try {
      await waitFor(() => s.events.length >= 2, 'replayed events');
      assert.deepEqual(summary(s.events), ['ADDED r1', 'ADDED r2']);
    } finally {
      s.abort();
    }
  });

  it('sends synthetic ADDED for current objects when no resourceVersion is given', async () => {
    const s = await open(d, { labelSelector: '!app' });
    try {
      const expected = d.objects('thinvolumes').filter((o) => o.metadata?.labels?.['app'] === undefined).length;
      await waitFor(() => s.events.length >= expected, 'initial ADDED events');
      assert.ok(s.events.every(([t]) => t === 'ADDED'));
      await api.createClusterCustomObject({ ...TV, body: thinVolume('live') });
      await waitFor(() => s.events.some(([, o]) => o.metadata.name === 'live'), 'live event');
    } finally {
      s.abort();
    }
  });

  it('answers a too-old resourceVersion with an ERROR 410 event and ends the stream', async () => {
    const old = d.resourceVersion();
    await api.createClusterCustomObject({ ...TV, body: thinVolume('after-old') });
    d.compact();
    const s = await open(d, { resourceVersion: old });
    await waitFor(() => s.done(), 'stream end');
    assert.equal(s.err(), null);
    assert.equal(s.events.length, 1);
    const [type, status] = s.events[0] ?? ['', { metadata: { name: '', resourceVersion: '' } }];
    assert.equal(type, 'ERROR');
    assert.deepEqual([status.kind, status.code, status.reason], ['Status', 410, 'Expired']);
    // The current resourceVersion is still watchable after compaction.
    const fresh = await open(d, { resourceVersion: d.resourceVersion() });
    try {
      await api.createClusterCustomObject({ ...TV, body: thinVolume('after-compact') });
      await waitFor(() => fresh.events.length === 1, 'event after compaction');
    } finally {
      fresh.abort();
    }
  });

  it('ends watches on timeoutSeconds and on dropWatches(); sends bookmarks on request', async () => {
    const t = await open(d, { resourceVersion: d.resourceVersion(), timeoutSeconds: '1' });
    const b = await open(d, { resourceVersion: d.resourceVersion(), allowWatchBookmarks: 'true' });
    try {
      await waitFor(() => t.done(), 'timeout end', 3000);
      assert.equal(t.err(), null);
      d.bookmark();
      await waitFor(() => b.events.length === 1, 'bookmark');
      assert.equal(b.events[0]?.[0], 'BOOKMARK');
      assert.equal(b.events[0]?.[1].metadata.resourceVersion, d.resourceVersion());
      assert.equal(d.watchCount(), 1);
      assert.equal(d.dropWatches(), 1);
      await waitFor(() => b.done(), 'dropped watch end');
      assert.equal(b.err(), null, 'a graceful drop ends the stream without error');
    } finally {
      b.abort();
    }
  });

  it('surfaces an abrupt drop as an error to the Watch done callback', async () => {
    const s = await open(d, { resourceVersion: d.resourceVersion() });
    d.dropWatches({ abrupt: true });
    await waitFor(() => s.done(), 'abrupt end');
    assert.ok(s.err() instanceof Error);
  });

  it('forgets events beyond historyLimit: resuming from before them gets 410', async () => {
    const small = await startApiDouble({ resources: DMTHIN_RESOURCES, historyLimit: 2 });
    try {
      small.seed('thinvolumes', { metadata: { name: 'h0' }, spec: {} });
      const rv = small.resourceVersion(); // "0" would mean "any": start after a real write
      for (const n of ['h1', 'h2', 'h3']) small.seed('thinvolumes', { metadata: { name: n }, spec: {} });
      const s = await open(small, { resourceVersion: rv });
      await waitFor(() => s.done(), 'expired stream end');
      assert.equal(s.events[0]?.[0], 'ERROR');
      assert.equal(s.events[0]?.[1].code, 410);
      const ok = await open(small, { resourceVersion: String(Number(rv) + 1) });
      await waitFor(() => ok.events.length === 2, 'retained events');
      assert.deepEqual(summary(ok.events), ['ADDED h2', 'ADDED h3']);
      ok.abort();
    } finally {
      await small.close();
    }
  });
});
