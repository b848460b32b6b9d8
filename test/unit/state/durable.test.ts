import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { type DirCalls, DirSync, fsyncDir, HeldDirs, writeAtomic } from '../../../src/state/durable.ts';
import { FileStore } from '../../../src/state/file.ts';
import { device } from './store-contract.ts';

/** A directory fsync the test finishes by hand, recording when each one started. */
function manualSync() {
  const started: Array<{ dir: string; finish: (err?: Error) => void }> = [];
  const sync = (dir: string) => new Promise<void>((resolve, reject) => {
    started.push({ dir, finish: (err) => (err ? reject(err) : resolve()) });
  });
  return { started, syncs: new DirSync(sync) };
}

const turn = () => new Promise((r) => setImmediate(r));

function tracked(p: Promise<void>) {
  const t = { done: false, error: undefined as unknown };
  p.then(() => { t.done = true; }, (e: unknown) => { t.done = true; t.error = e; });
  return t;
}

describe('DirSync (group commit of directory fsyncs)', () => {
  it('callers that arrive before an fsync starts share it', async () => {
    const { started, syncs } = manualSync();
    const waits = [1, 2, 3, 4].map(() => tracked(syncs.after('/d')));
    await turn();
    assert.equal(started.length, 1);
    started[0]!.finish();
    await turn();
    assert.ok(waits.every((w) => w.done && w.error === undefined));
  });

  it('never answers a caller with an fsync that started before its call (it may have missed the rename)', async () => {
    const { started, syncs } = manualSync();
    const first = tracked(syncs.after('/d'));
    await turn();
    assert.equal(started.length, 1); // running now
    const late = tracked(syncs.after('/d'));
    const later = tracked(syncs.after('/d'));
    started[0]!.finish();
    await turn();
    assert.equal(first.done, true);
    assert.equal(late.done, false, 'the late caller waits for the next fsync');
    assert.equal(started.length, 2, 'which starts once the first is over');
    started[1]!.finish();
    await turn();
    assert.ok(late.done && later.done);
  });

  it('a failed fsync fails every caller sharing it, and the next caller gets a fresh one', async () => {
    const { started, syncs } = manualSync();
    const a = tracked(syncs.after('/d'));
    const b = tracked(syncs.after('/d'));
    await turn();
    started[0]!.finish(new Error('EIO'));
    await turn();
    assert.match(String(a.error), /EIO/);
    assert.match(String(b.error), /EIO/);
    const c = tracked(syncs.after('/d'));
    await turn();
    assert.equal(started.length, 2);
    started[1]!.finish();
    await turn();
    assert.equal(c.error, undefined);
    assert.equal(c.done, true);
  });

  it('directories do not wait for each other', async () => {
    const { started, syncs } = manualSync();
    const a = tracked(syncs.after('/a'));
    const b = tracked(syncs.after('/b'));
    await turn();
    assert.deepEqual(started.map((s) => s.dir).sort(), ['/a', '/b']);
    started.find((s) => s.dir === '/b')!.finish();
    await turn();
    assert.equal(b.done, true);
    assert.equal(a.done, false);
  });
});

describe('writeAtomic', () => {
  it('concurrent writes in one directory share directory fsyncs, and each resolves only after one that followed its rename', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'durable-'));
    try {
      const renamedBeforeSync: string[][] = [];
      const seen = (): string[] => readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
      const syncs = new DirSync(async (d) => { renamedBeforeSync.push(seen()); await fsyncDir(d); });
      const done = new Set<string>();
      await Promise.all(Array.from({ length: 16 }, (_, i) => writeAtomic(path.join(dir, `r${i}.json`), `{"i":${i}}\n`, syncs).then(() => {
        // This file's rename was visible to a directory fsync that has completed.
        assert.ok(renamedBeforeSync.some((names) => names.includes(`r${i}.json`)), `r${i}.json resolved before an fsync saw it`);
        done.add(`r${i}.json`);
      })));
      assert.equal(done.size, 16);
      assert.ok(renamedBeforeSync.length < 16, `${renamedBeforeSync.length} directory fsyncs for 16 writes`);
      assert.equal(readFileSync(path.join(dir, 'r7.json'), 'utf8'), '{"i":7}\n');
      assert.deepEqual(readdirSync(dir).filter((n) => !n.endsWith('.json')), [], 'no temp file left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes larger than one write(2) call in full', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'durable-'));
    try {
      const big = 'x'.repeat(3 << 20);
      await writeAtomic(path.join(dir, 'big.json'), big);
      assert.equal(readFileSync(path.join(dir, 'big.json'), 'utf8'), big);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('FileStore under concurrent writes', () => {
  it('every record written concurrently (created, updated, deleted) reads back after reopen', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'filestore-conc-'));
    try {
      const s1 = await FileStore.open(dir);
      const ids = Array.from({ length: 24 }, (_, i) => `vol-${i}`);
      await Promise.all(ids.map(async (id) => {
        await s1.createDevice(device(id));
        await s1.updateDevice(id, (r) => { r.state = 'Created'; });
      }));
      await Promise.all(ids.slice(0, 8).map((id) => s1.deleteDevice(id)));
      await s1.close();
      const s2 = await FileStore.open(dir);
      const recs = await s2.listDevices();
      assert.deepEqual(recs.map((r) => r.id).sort(), ids.slice(8).sort());
      assert.ok(recs.every((r) => r.state === 'Created'));
      await s2.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Directory calls that succeed and are logged; `failFsync` makes the next fsync fail. */
function loggedDirCalls() {
  const log: string[] = [];
  let fds = 100;
  const st = { failFsync: false };
  const calls: DirCalls = {
    open: async (dir) => { const fd = fds++; log.push(`open ${dir} ${fd}`); return fd; },
    fsync: async (fd) => {
      log.push(`fsync ${fd}`);
      if (st.failFsync) { st.failFsync = false; throw new Error('EIO'); }
    },
    close: async (fd) => { log.push(`close ${fd}`); },
  };
  return { log, calls, st };
}

describe('HeldDirs (directory descriptors kept for their fsyncs)', () => {
  it('opens each directory once and fsyncs it through that descriptor every time', async () => {
    const { log, calls } = loggedDirCalls();
    const dirs = new HeldDirs(calls);
    for (let i = 0; i < 3; i++) await dirs.sync('/a');
    await dirs.sync('/b');
    assert.deepEqual(log, ['open /a 100', 'fsync 100', 'fsync 100', 'fsync 100', 'open /b 101', 'fsync 101']);
    await dirs.close();
    assert.deepEqual(log.slice(6).sort(), ['close 100', 'close 101']);
  });

  it('a failed fsync fails its caller, closes that descriptor, and the next sync opens afresh', async () => {
    const { log, calls, st } = loggedDirCalls();
    const dirs = new HeldDirs(calls);
    await dirs.sync('/a');
    st.failFsync = true;
    await assert.rejects(dirs.sync('/a'), /EIO/);
    await dirs.sync('/a');
    assert.deepEqual(log, ['open /a 100', 'fsync 100', 'fsync 100', 'close 100', 'open /a 101', 'fsync 101']);
  });

  it('a FileStore holds its devices directory open while open, and lets it go at close', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'filestore-fds-'));
    const devices = path.join(dir, 'devices');
    const heldOn = (p: string) => readdirSync('/proc/self/fd').filter((fd) => {
      try { return readlinkSync(`/proc/self/fd/${fd}`) === p; } catch { return false; }
    }).length;
    try {
      const s = await FileStore.open(dir);
      await s.createDevice(device('vol-a'));
      await s.updateDevice('vol-a', (r) => { r.state = 'Created'; });
      await s.deleteDevice('vol-a');
      assert.equal(heldOn(devices), 1, 'one descriptor serves every write and delete');
      await s.close();
      assert.equal(heldOn(devices), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
