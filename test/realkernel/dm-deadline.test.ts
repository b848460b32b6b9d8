/**
 * Deadlines over ioctls that really block (issue 16). A flush suspend blocks for real where
 * containerd's devmapper hung: writes queued inside a full thin pool (queue_if_no_space, the
 * default), which the suspend waits for until dm_thin_pool's no_space_timeout errors them. That
 * timeout is set short here, so the kernel lets go within seconds and the background call can be
 * watched finishing. Then the errno of failing asynchronous ioctls, end to end.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { IoctlDeviceMapper } from '../../src/devmapper/ioctl/device-mapper.ts';
import { DmError } from '../../src/devmapper/types.ts';
import { background as ctx } from '../../src/system/context.ts';
import { sleep } from '../../src/system/delay.ts';
import { MiB } from '../support/csi-client.ts';
import { sh } from './harness.ts';

const NO_SPACE_TIMEOUT = '/sys/module/dm_thin_pool/parameters/no_space_timeout';
/** Seconds the kernel queues writes to a full pool before erroring them. */
const NO_SPACE_S = 5;
const DIR = '/var/lib/dmthin-rk-dm-deadline-dm';
const P = 'rkdl-pool';
const THIN = 'rkdl-thin';

let savedTimeout = '';
before(() => {
  savedTimeout = readFileSync(NO_SPACE_TIMEOUT, 'utf8').trim();
  writeFileSync(NO_SPACE_TIMEOUT, String(NO_SPACE_S));
});
after(() => { if (savedTimeout) writeFileSync(NO_SPACE_TIMEOUT, savedTimeout); });

async function until(what: string, ms: number, cond: () => boolean): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
  return Date.now();
}

const outOfSpace = (pool: string) => sh('dmsetup', ['status', pool]).includes('out_of_data_space');
const suspended = (name: string) => sh('dmsetup', ['info', '-c', '--noheadings', '-o', 'attr', name]).trim()[2] === 's';

/** dd onto a thin device until the pool is full: its last writes stay queued in the pool. */
function fill(dev: string, mb: number): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', `count=${mb}`, 'oflag=direct', 'status=none'], { stdio: 'ignore' });
  return { child, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

function isKind(kind: string, errno: string) {
  return (e: unknown) => {
    assert.ok(e instanceof DmError, String(e));
    assert.deepEqual({ kind: e.kind, errno: e.errno }, { kind, errno }, e.message);
    return true;
  };
}

describe('IoctlDeviceMapper with a flush suspend that blocks', { timeout: 300_000 }, () => {
  const dm = new IoctlDeviceMapper({ udev: false });
  const loops: string[] = [];
  before(() => {
    rmSync(DIR, { recursive: true, force: true });
    mkdirSync(DIR, { recursive: true });
    for (const [f, size] of [['meta', '16M'], ['data', '16M']] as const) {
      sh('truncate', ['-s', size, `${DIR}/${f}.img`]);
      loops.push(sh('losetup', ['-f', '--show', `${DIR}/${f}.img`]).trim());
    }
  });
  after(async () => {
    for (const n of ['rkdl-held', THIN, P]) {
      await dm.resume(ctx, n).catch(() => undefined);
      await dm.remove(ctx, n, { retry: true }).catch(() => undefined);
    }
    for (const l of loops) sh('losetup', ['-d', l]);
  });

  it('answers a failing asynchronous ioctl with the kernel\'s errno', async () => {
    // 16 MiB of data in 64 KiB blocks; no features: queue_if_no_space.
    await dm.create(ctx, P, `0 32768 thin-pool ${loops[0]} ${loops[1]} 128 0 1 skip_block_zeroing`);
    await dm.message(ctx, P, 'create_thin 0');
    await dm.message(ctx, P, 'create_thin 1');
    await assert.rejects(dm.message(ctx, P, 'create_thin 1'), isKind('exists', 'EEXIST'));
    await assert.rejects(dm.message(ctx, P, 'delete 9'), isKind('no_data', 'ENODATA'));
    await assert.rejects(dm.message(ctx, 'rkdl-no-such-pool', 'delete 9'), isKind('not_found', 'ENXIO'));
    await assert.rejects(dm.suspend(ctx, 'rkdl-no-such-dev'), isKind('not_found', 'ENXIO'));
    await dm.create(ctx, 'rkdl-held', `0 2048 thin /dev/mapper/${P} 1`);
    const fd = openSync('/dev/mapper/rkdl-held', 'r');
    try {
      await assert.rejects(dm.remove(ctx, 'rkdl-held'), isKind('busy', 'EBUSY'));
    } finally {
      closeSync(fd);
    }
    await dm.remove(ctx, 'rkdl-held');
    await dm.message(ctx, P, 'delete 1');
    assert.equal(await dm.info(ctx, 'rkdl-held'), undefined);
  });

  it('times a blocked suspend out at the deadline, keeps serving, and the kernel finishes it later', async () => {
    await dm.create(ctx, THIN, `0 ${(256 * MiB) / 512} thin /dev/mapper/${P} 0`);
    const dd = fill(`/dev/mapper/${THIN}`, 64);
    await until('pool out of data space', 60_000, () => outOfSpace(P));
    const events: string[] = [];
    const t0 = Date.now();
    // Below the Control's floor of one second, so the floor is what is waited.
    const pending = dm.suspend({ deadline: t0 + 500 }, THIN).then(() => undefined, (e: unknown) => e);
    void pending.then(() => events.push('suspend settled'));
    setImmediate(() => events.push('immediate'));
    setTimeout(() => events.push('timer 50 ms'), 50);
    const info = await dm.info(ctx, THIN); // quick: on the event loop's thread
    events.push('info');
    const status = await dm.poolStatus(ctx, P); // on a worker thread, beside the blocked one
    events.push('pool status');
    const err = await pending;
    const t1 = Date.now();
    const kernelStillBlocked = !suspended(THIN) && dd.child.exitCode === null;
    console.log(`suspend answered after ${t1 - t0} ms: ${String(err)}; events ${events.join(', ')}`);
    assert.ok(err instanceof DmError && err.kind === 'timeout' && err.errno === 'ETIMEDOUT', String(err));
    assert.ok(kernelStillBlocked, 'the deadline answered while the kernel still held the suspend and the writes');
    for (const e of ['immediate', 'timer 50 ms', 'info', 'pool status']) {
      assert.ok(events.indexOf(e) >= 0 && events.indexOf(e) < events.indexOf('suspend settled'), `${e} before the suspend settled: ${events.join(', ')}`);
    }
    assert.equal(info?.suspended, false);
    assert.equal(status.mode, 'out_of_data_space');
    const code = await dd.exited;
    const t2 = await until('the background suspend completes', (NO_SPACE_S + 60) * 1000, () => suspended(THIN));
    console.log(`kernel let go: dd exited ${code}, device suspended ${t2 - t0} ms after the suspend was asked`);
    assert.notEqual(code, 0, 'the queued writes failed');
    // The same Control, its descriptor untouched by the timeout, sees and undoes it.
    assert.equal((await dm.info(ctx, THIN))?.suspended, true);
    await dm.resume(ctx, THIN);
    assert.equal((await dm.info(ctx, THIN))?.suspended, false);
    sh('dd', ['if=/dev/zero', `of=/dev/mapper/${THIN}`, 'bs=64k', 'count=1', 'oflag=direct', 'conv=notrunc', 'status=none']);
    await dm.remove(ctx, THIN);
    assert.equal(await dm.info(ctx, THIN), undefined);
  });
});

// The driver no longer suspends on a pool out of data space: CreateSnapshot there is refused at
// once (capacity.test.ts, "a pool out of data space, writes queued in it"). A suspend that outlives
// its deadline is resumed by resumeLateSuspend (test/unit/pool/late-suspend.test.ts).
