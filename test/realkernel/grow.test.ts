/**
 * Growing the pool online on a real kernel while a volume is written: a file pool growing by
 * itself on its low-water event up to its ceiling, then on request (a larger --loop-data-size
 * at a restart); a pool on a linear dm device that is reloaded larger. Every write is fsynced,
 * none may fail, and what was written must read back (checksum).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blockCap, MiB } from '../support/csi-client.ts';
import { KUBELET, POOL, sh, startDriver, STATE, stopDriver, tail, type DriverProcess } from './harness.ts';
import type { DeviceRecord } from '../../src/state/types.ts';
import { sleep } from '../../src/system/delay.ts';

const METRICS = '127.0.0.1:19818';
const CHUNK = MiB;

/** The pool's data blocks (total, used) and mode, from `dmsetup status`. */
function poolStatus(pool: string): { totalBytes: number; usedBytes: number; mode: string; needsCheck: boolean } {
  const f = sh('dmsetup', ['status', pool]).trim().split(/\s+/);
  const bs = Number(sh('dmsetup', ['table', pool]).trim().split(/\s+/)[5]) * 512;
  const [used, total] = f[5]!.split('/').map(Number) as [number, number];
  return { totalBytes: total * bs, usedBytes: used * bs, mode: f[7]!, needsCheck: f[10] === 'needs_check' };
}

/** Writes `chunks` MiB of distinct data at `fromChunk`, each chunk fsynced; the digest of what was written. */
async function writeChunks(dev: string, fromChunk: number, chunks: number, digest: ReturnType<typeof createHash>): Promise<void> {
  const fd = openSync(dev, 'r+');
  try {
    for (let i = fromChunk; i < fromChunk + chunks; i++) {
      const buf = createHash('sha512').update(`chunk ${i}`).digest();
      const data = Buffer.alloc(CHUNK);
      for (let o = 0; o < CHUNK; o += buf.length) buf.copy(data, o);
      writeSync(fd, data, 0, CHUNK, i * CHUNK);
      fsyncSync(fd);
      digest.update(data);
      await sleep(0); // the event loop turns: the driver is another process, but the test's timers run
    }
  } finally {
    closeSync(fd);
  }
}

/** The digest of the first `chunks` MiB as the device holds them (its page cache dropped first). */
function readDigest(dev: string, chunks: number): string {
  sh('blockdev', ['--flushbufs', dev]);
  const fd = openSync(dev, 'r');
  const h = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  try {
    for (let i = 0; i < chunks; i++) {
      assert.equal(readSync(fd, buf, 0, CHUNK, i * CHUNK), CHUNK);
      h.update(buf);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** A block volume, staged (its device active): the path to write it at. */
async function blockVolume(d: DriverProcess, stateDir: string, name: string, bytes: number): Promise<string> {
  const vol = (await d.clients.controller.call('CreateVolume', { name, capacity_range: { required_bytes: bytes }, volume_capabilities: [blockCap()] })).volume;
  await d.clients.node.call('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: `${KUBELET}/staging/${vol.volume_id}`, volume_capability: blockCap() });
  const rec = JSON.parse(readFileSync(join(stateDir, 'store', 'devices', `${vol.volume_id}.json`), 'utf8')) as DeviceRecord;
  return `/dev/mapper/${rec.dmName}`;
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://${METRICS}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function until(what: string, ms: number, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const t0 = Date.now(); !(await cond());) {
    if (Date.now() - t0 > ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('growing the pool online on a real kernel', { timeout: 600_000 }, () => {
  let d: DriverProcess | undefined;
  const stop = async () => {
    if (!d) return;
    const code = await stopDriver(d);
    if (code !== 0) console.log(tail(d.log));
    assert.equal(code, 0, 'the driver stops cleanly, the growth loop included');
    d = undefined;
  };
  before(() => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
  });
  after(stop);

  it('a file pool grows by itself on the low-water event up to its ceiling, then on request, under a writer', async () => {
    const args = (size: string) => ['--loop-data-size', size, '--loop-metadata-size', '8Mi', '--pool-grow-max', '80Mi', '--overprovision-ratio', '8', '--metrics-address', METRICS];
    d = await startDriver(args('32Mi'));
    assert.equal(poolStatus(POOL).totalBytes, 32 * MiB);
    const dev = await blockVolume(d, STATE, 'grow-a', 128 * MiB);
    const digest = createHash('sha256');
    // 74 MiB through a 32 MiB pool: it must grow (32 → 40 → 50 → 62.5 → 78.1 → 80) under the writer,
    // and the last MiBs pass the mark of the 80 MiB pool, which is at its ceiling.
    await writeChunks(dev, 0, 74, digest);
    const s = poolStatus(POOL);
    assert.equal(s.totalBytes, 80 * MiB, 'grown to the ceiling');
    assert.deepEqual([s.mode, s.needsCheck], ['rw', false]);
    assert.equal(statSync(join(STATE, 'pool', 'data.img')).size, 80 * MiB);
    assert.ok(await metric('dmthin_csi_pool_growths_total', 'outcome="grown",reason="low_water"') >= 4);
    await until('the refusal at the ceiling', 20_000, async () => (await metric('dmthin_csi_pool_growths_total', 'outcome="refused",reason="ceiling"')) === 1);
    const cap = await d.clients.controller.call('GetCapacity', {});
    const now = poolStatus(POOL);
    assert.equal(Number(cap.available_capacity), (now.totalBytes - now.usedBytes) * 8, 'GetCapacity counts the grown pool');
    assert.equal(readDigest(dev, 74), digest.copy().digest('hex'), 'what was written reads back');

    // On request: a larger --loop-data-size at a restart; the volume stays written meanwhile.
    await stop();
    d = await startDriver(args('120Mi'));
    assert.equal(poolStatus(POOL).totalBytes, 120 * MiB, 'the start took the requested size');
    await writeChunks(dev, 74, 24, digest);
    assert.equal(readDigest(dev, 98), digest.digest('hex'));
    assert.deepEqual(sh('dmsetup', ['info', '-c', '--noheadings', '-o', 'attr', POOL]).trim().charAt(2), '-', 'the pool is not left suspended');
    await stop();
  });

  it('a pool on a linear dm device takes the device grown under it, under a writer (dmsetup interface)', async () => {
    const dir = '/var/lib/dmthin-rk-grow-dev';
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    sh('truncate', ['-s', '48M', join(dir, 'lower.img')]);
    sh('truncate', ['-s', '8M', join(dir, 'meta.img')]);
    const lower = sh('losetup', ['-f', '--show', join(dir, 'lower.img')]).trim();
    const meta = sh('losetup', ['-f', '--show', join(dir, 'meta.img')]).trim();
    const linear = 'dmthin-rk-grow-lin';
    const sectors = (bytes: number) => String(bytes / 512);
    sh('dmsetup', ['create', linear, '--table', `0 ${sectors(32 * MiB)} linear ${lower} 0`]);
    const pool = `${POOL}-dev`;
    // dmsetup this time: its `dmsetup wait` must not hold the stop either.
    const args = ['--state-dir', join(dir, 'state'), '--pool-name', pool, '--pool-data-device', `/dev/mapper/${linear}`, '--pool-metadata-device', meta, '--overprovision-ratio', '8', '--dm-interface', 'dmsetup'];
    try {
      d = await startDriver(args);
      assert.equal(poolStatus(pool).totalBytes, 32 * MiB);
      const dev = await blockVolume(d, join(dir, 'state'), 'grow-b', 64 * MiB);
      const digest = createHash('sha256');
      await writeChunks(dev, 0, 20, digest);
      // The device under the pool grows (as an lvextend would), and the driver is asked again by a restart.
      sh('dmsetup', ['reload', linear, '--table', `0 ${sectors(48 * MiB)} linear ${lower} 0`]);
      sh('dmsetup', ['resume', linear]);
      await stop();
      d = await startDriver(args);
      assert.equal(poolStatus(pool).totalBytes, 48 * MiB, 'the pool took its grown device at the start');
      await writeChunks(dev, 20, 20, digest);
      assert.equal(readDigest(dev, 40), digest.digest('hex'));
      const cap = await d.clients.controller.call('GetCapacity', {});
      const s = poolStatus(pool);
      assert.equal(Number(cap.available_capacity), (s.totalBytes - s.usedBytes) * 8);
      try { sh('dmsetup', ['remove', dev.replace('/dev/mapper/', '')]); } catch { /* left for the VM's power-off */ }
      await stop();
    } finally {
      if (d) await stop();
      // Best effort: the guest is thrown away at power-off, but the next suite should not meet these.
      for (const name of [pool, linear]) try { sh('dmsetup', ['remove', name]); } catch { /* still held */ }
      for (const loop of [lower, meta]) try { sh('losetup', ['-d', loop]); } catch { /* already gone */ }
    }
  });
});
