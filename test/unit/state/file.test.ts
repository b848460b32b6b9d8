import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { encodeId, FileStore } from '../../../src/state/file.ts';
import { StoreError } from '../../../src/state/types.ts';
import { device, storeContract } from './store-contract.ts';

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'filestore-'));
}

storeContract('FileStore', async () => {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

function isIo(e: unknown): boolean {
  return e instanceof StoreError && e.kind === 'io';
}

describe('FileStore persistence', () => {
  let dir: string;
  beforeEach(() => { dir = tempDir(); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads everything back after close and reopen, with revisions still increasing', async () => {
    const s1 = await FileStore.open(dir);
    await s1.createDevice(device('vol-a'));
    await s1.createDevice(device('snap-b', { kind: 'snapshot', origin: 'vol-a' }));
    const last = await s1.updateDevice('vol-a', (r) => { r.state = 'Activated'; });
    const pool = await s1.updatePool(() => ({ name: 'pool0', transactionId: 4, updatedAt: 't' }));
    const before = await s1.listDevices();
    await s1.close();
    assert.equal(existsSync(path.join(dir, 'lock')), false, 'close releases the lock');

    const s2 = await FileStore.open(dir);
    assert.deepEqual(await s2.listDevices(), before);
    assert.deepEqual(await s2.getPool(), pool);
    assert.deepEqual(s2.problems(), []);
    const next = await s2.updateDevice('vol-a', (r) => { r.state = 'Deactivated'; });
    assert.ok(Number(next.revision) > Number(last.revision) && Number(next.revision) > Number(pool.revision));
    await s2.close();
  });

  it('stores one file per record with its revision, under a safe file name', async () => {
    const s = await FileStore.open(dir);
    const odd = 'Vol_1.x/../y é';
    const r = await s.createDevice(device(odd));
    await s.createDevice(device('vol-a'));
    const names = readdirSync(path.join(dir, 'devices')).sort();
    assert.deepEqual(names, [`${encodeId(odd)}.json`, 'vol-a.json'].sort());
    assert.match(encodeId(odd), /^[a-z0-9_-]+$/);
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'devices', `${encodeId(odd)}.json`), 'utf8'));
    assert.equal(onDisk.id, odd);
    assert.equal(onDisk.revision, r.revision);
    await s.close();
    const again = await FileStore.open(dir);
    assert.equal((await again.getDevice(odd))?.id, odd);
    await again.deleteDevice(odd);
    assert.deepEqual(readdirSync(path.join(dir, 'devices')), ['vol-a.json']);
    await again.close();
  });

  it('ignores and removes leftover temp files', async () => {
    const s1 = await FileStore.open(dir);
    await s1.createDevice(device('vol-a'));
    await s1.close();
    writeFileSync(path.join(dir, 'devices', '.vol-a.json.tmp-4242-7'), '{"half": ');
    writeFileSync(path.join(dir, 'devices', '.vol-new.json.tmp-4242-8'), JSON.stringify(device('vol-new')));
    writeFileSync(path.join(dir, '.pool.json.tmp-4242-9'), '{');
    const s2 = await FileStore.open(dir);
    assert.deepEqual((await s2.listDevices()).map((r) => r.id), ['vol-a']);
    assert.deepEqual(s2.problems(), []);
    assert.deepEqual(readdirSync(path.join(dir, 'devices')), ['vol-a.json']);
    assert.equal(existsSync(path.join(dir, '.pool.json.tmp-4242-9')), false);
    await s2.close();
  });

  it('moves corrupt files aside, reports them, and keeps the other records', async () => {
    const s1 = await FileStore.open(dir);
    await s1.createDevice(device('vol-good'));
    await s1.close();
    const devDir = path.join(dir, 'devices');
    writeFileSync(path.join(devDir, 'vol-bad.json'), '{"id": "vol-bad", ');
    writeFileSync(path.join(devDir, 'vol-wrong.json'), JSON.stringify(device('vol-other')));
    writeFileSync(path.join(devDir, 'vol-invalid.json'), JSON.stringify({ ...device('vol-invalid'), state: 'Weird' }));
    writeFileSync(path.join(dir, 'pool.json'), '');

    const s2 = await FileStore.open(dir);
    assert.deepEqual((await s2.listDevices()).map((r) => r.id), ['vol-good']);
    assert.equal(await s2.getPool(), undefined);
    const problems = s2.problems();
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('devices/vol-bad.json: invalid JSON')));
    assert.ok(problems.some((p) => p.startsWith('devices/vol-wrong.json: file name does not match')));
    assert.ok(problems.some((p) => p.startsWith('devices/vol-invalid.json: state "Weird"')));
    assert.ok(problems.some((p) => p.startsWith('pool.json: invalid JSON')));
    const aside = readdirSync(devDir).filter((n) => n.includes('.corrupt-'));
    assert.equal(aside.length, 3);
    const bad = aside.find((n) => n.startsWith('vol-bad.json.corrupt-'));
    assert.equal(readFileSync(path.join(devDir, bad!), 'utf8'), '{"id": "vol-bad", ', 'kept byte for byte');
    assert.ok(readdirSync(dir).some((n) => n.startsWith('pool.json.corrupt-')));
    // The quarantined id is free again, and the next open reports nothing new.
    await s2.createDevice(device('vol-bad'));
    await s2.close();
    const s3 = await FileStore.open(dir);
    assert.deepEqual(s3.problems(), []);
    assert.deepEqual((await s3.listDevices()).map((r) => r.id), ['vol-bad', 'vol-good']);
    await s3.close();
  });

  it('leaves disk and cache unchanged when a write fails', async () => {
    const s = await FileStore.open(dir);
    const c = await s.createDevice(device('vol-a'));
    const devDir = path.join(dir, 'devices');
    renameSync(devDir, `${devDir}.away`);
    writeFileSync(devDir, 'not a directory');
    try {
      await assert.rejects(s.updateDevice('vol-a', (r) => { r.state = 'Faulty'; }), isIo);
      await assert.rejects(s.createDevice(device('vol-b')), isIo);
      await assert.rejects(s.deleteDevice('vol-a'), isIo);
      assert.deepEqual(await s.getDevice('vol-a'), c);
      assert.equal(await s.getDevice('vol-b'), undefined);
    } finally {
      rmSync(devDir);
      renameSync(`${devDir}.away`, devDir);
    }
    assert.equal((await s.updateDevice('vol-a', (r) => { r.state = 'Created'; })).state, 'Created');
    await s.close();
  });

  it('concurrent updates all reach the disk', async () => {
    const s = await FileStore.open(dir);
    await s.createDevice(device('vol-a', { meta: { n: '0' } }));
    await Promise.all(Array.from({ length: 30 }, () => s.updateDevice('vol-a', (r) => { r.meta.n = String(Number(r.meta.n) + 1); })));
    const pending = s.updateDevice('vol-a', (r) => { r.meta.n = String(Number(r.meta.n) + 1); });
    await s.close(); // waits for the write in flight
    await pending;
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'devices', 'vol-a.json'), 'utf8'));
    assert.equal(onDisk.meta.n, '31');
  });

  it('refuses use after close', async () => {
    const s = await FileStore.open(dir);
    await s.close();
    await assert.rejects(s.getDevice('x'), isIo);
    await assert.rejects(s.createDevice(device('x')), isIo);
  });

  it('fails with io when the directory cannot be created', async () => {
    const file = path.join(dir, 'file');
    writeFileSync(file, '');
    await assert.rejects(FileStore.open(file), isIo);
  });
});

describe('FileStore lock', () => {
  let dir: string;
  const children: ChildProcess[] = [];
  beforeEach(() => { dir = tempDir(); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  after(() => { for (const c of children) c.kill('SIGKILL'); });

  function liveChild(): number {
    const c = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(c);
    assert.ok(c.pid, 'spawned');
    return c.pid;
  }

  function deadPid(): number {
    const r = spawnSync('true');
    assert.ok(r.pid);
    return r.pid;
  }

  it('writes our pid into DIR/lock', async () => {
    const s = await FileStore.open(dir);
    assert.equal(readFileSync(path.join(dir, 'lock'), 'utf8').split('\n')[0], String(process.pid));
    await s.close();
  });

  it('refuses a second open while this process holds it', async () => {
    const s = await FileStore.open(dir);
    await assert.rejects(FileStore.open(dir), (e: unknown) => isIo(e) && (e as Error).message.includes(`process ${process.pid}`));
    await s.close();
    const again = await FileStore.open(dir);
    await again.close();
  });

  it('refuses a lock held by another live process, naming its pid', async () => {
    const pid = liveChild();
    writeFileSync(path.join(dir, 'lock'), `${pid}\n`);
    await assert.rejects(FileStore.open(dir), (e: unknown) => isIo(e) && (e as Error).message.includes(`locked by running process ${pid}`));
    assert.equal(readFileSync(path.join(dir, 'lock'), 'utf8'), `${pid}\n`, 'the holder keeps its lock');
  });

  it('takes over the lock of a dead process', async () => {
    const pid = deadPid();
    writeFileSync(path.join(dir, 'lock'), `${pid}\n`);
    const s = await FileStore.open(dir);
    assert.equal(readFileSync(path.join(dir, 'lock'), 'utf8').split('\n')[0], String(process.pid));
    await s.createDevice(device('vol-a'));
    await s.close();
    assert.equal(existsSync(path.join(dir, 'lock')), false);
  });

  it('takes over a lock whose pid was reused by another process (start time differs)', async () => {
    const pid = liveChild();
    writeFileSync(path.join(dir, 'lock'), `${pid}\n1\n`);
    const s = await FileStore.open(dir);
    await s.close();
  });

  it('takes over a lock carrying our own pid from an earlier incarnation (container restart as pid 1)', async () => {
    writeFileSync(path.join(dir, 'lock'), `${process.pid}\n`);
    const s = await FileStore.open(dir);
    await s.close();
  });

  it('takes over an empty or garbled lock file', async () => {
    writeFileSync(path.join(dir, 'lock'), '');
    const s = await FileStore.open(dir);
    await s.close();
    writeFileSync(path.join(dir, 'lock'), 'garbage\n');
    const t = await FileStore.open(dir);
    await t.close();
  });
});
