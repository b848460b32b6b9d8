import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { DmsetupDeviceMapper } from '../../../src/devmapper/dmsetup.ts';
import { DmError, type DmErrorKind } from '../../../src/devmapper/types.ts';
import { background as ctx } from '../../../src/system/context.ts';
import { FakeDmsetup } from '../../doubles/devmapper/fake-dmsetup.ts';
import { onlyTarget, recorded, recordedFailure } from './fixtures.ts';

const INFO = ['info', '-c', '--noheadings', '--separator', '|', '-o', 'name,major,minor,attr,open,segments,events,uuid'];

async function failure(p: Promise<unknown>): Promise<DmError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof DmError, `expected DmError, got ${String(err)}`);
  return err;
}

describe('DmsetupDeviceMapper', () => {
  let fake: FakeDmsetup;
  let dm: DmsetupDeviceMapper;
  before(() => { delete process.env.DM_DISABLE_UDEV; });
  beforeEach(() => {
    fake?.cleanup();
    fake = new FakeDmsetup();
    dm = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, maxMs: 10_000 });
  });
  after(() => fake?.cleanup());

  describe('argv', () => {
    it('create passes the table as one argument, with --readonly and --uuid', async () => {
      await dm.create(ctx, 'vol-1', '0 2048 thin 254:0 7', { readOnly: true, uuid: 'CSI-1' });
      assert.deepEqual(fake.lastArgv(), ['create', 'vol-1', '--table', '0 2048 thin 254:0 7', '--readonly', '--uuid', 'CSI-1']);
      await dm.create(ctx, 'vol-2', '0 2048 thin 254:0 8');
      assert.deepEqual(fake.lastArgv(), ['create', 'vol-2', '--table', '0 2048 thin 254:0 8']);
    });

    it('reload, suspend, resume and remove', async () => {
      await dm.reload(ctx, 'v', '0 4096 thin 254:0 7');
      await dm.suspend(ctx, 'v');
      await dm.suspend(ctx, 'v', { noFlush: true });
      await dm.resume(ctx, 'v');
      await dm.remove(ctx, 'v');
      await dm.remove(ctx, 'v', { retry: true, force: true, deferred: true });
      assert.deepEqual(fake.calls().map((c) => c.argv), [
        ['reload', 'v', '--table', '0 4096 thin 254:0 7'],
        ['suspend', 'v'],
        ['suspend', '--noflush', 'v'],
        ['resume', 'v'],
        ['remove', 'v'],
        ['remove', '--retry', '--force', '--deferred', 'v'],
      ]);
    });

    it('message sends the whole message as ONE argv element after sector 0', async () => {
      await dm.message(ctx, 'pool', 'create_snap 2 1');
      assert.deepEqual(fake.lastArgv(), ['message', 'pool', '0', 'create_snap 2 1']);
    });

    it('queries: info, listings, status and table', async () => {
      fake.respond({ stdout: 'No devices found\n' });
      assert.deepEqual(await dm.infoAll(ctx), []);
      assert.deepEqual((await dm.thinStatusAll(ctx)).size, 0);
      assert.deepEqual((await dm.thinTableAll(ctx)).size, 0);
      assert.deepEqual(fake.calls().map((c) => c.argv), [INFO, ['status', '--target', 'thin'], ['table', '--target', 'thin']]);
      fake.respond({ stdout: 'pool|254|0|L--w|1|1|0|\n' });
      assert.equal((await dm.info(ctx, 'pool'))?.openCount, 1);
      assert.deepEqual(fake.lastArgv(), [...INFO, 'pool']);
      fake.respond({ stdout: '0 2097152 thin 67712 2097151\n' });
      assert.equal((await dm.thinStatus(ctx, 'v')).mappedSectors, 67712);
      assert.deepEqual(fake.lastArgv(), ['status', 'v']);
      fake.respond({ stdout: '0 2097152 thin 254:0 1\n' });
      assert.equal((await dm.thinTable(ctx, 'v')).poolDev, '254:0');
      assert.deepEqual(fake.lastArgv(), ['table', 'v']);
    });

    it('recorded listings and info rows', async () => {
      fake.respond({ stdout: recorded('ok-info-c-none.stdout.txt') });
      assert.deepEqual(await dm.infoAll(ctx), []);
      fake.respond({ stdout: recorded('ok-status-none.stdout.txt') });
      assert.equal((await dm.thinStatusAll(ctx)).size, 0);
      fake.respond({ stdout: onlyTarget(recorded('status-all.txt'), 'thin') });
      assert.equal((await dm.thinStatusAll(ctx)).get('smoke-thin')?.mappedSectors, 18688);
      fake.respond({ stdout: onlyTarget(recorded('table-all.txt'), 'thin') });
      assert.deepEqual((await dm.thinTableAll(ctx)).get('smoke-thin'), { lengthSectors: 2097152, poolDev: '254:0', deviceId: 0, externalOrigin: undefined });
      fake.respond({ stdout: recorded('info-c-all.txt') });
      assert.deepEqual((await dm.infoAll(ctx)).map((i) => `${i.name} ${i.major}:${i.minor}`), ['smoke-pool 254:0', 'smoke-thin 254:1']);
      fake.respond({ stdout: recorded('info-c-thin.txt') });
      assert.equal((await dm.info(ctx, 'smoke-thin'))?.uuid, 'SMOKE-THIN-0000');
      fake.respond({ stdout: recorded('status-full-pool.txt') });
      assert.equal((await dm.poolStatus(ctx, 'smoke-full-pool')).mode, 'out_of_data_space');
      fake.respond({ stdout: recorded('table-pool.txt') });
      assert.equal((await dm.poolTable(ctx, 'smoke-pool')).dataBlockSectors, 128);
    });

    it('parses multi-device listings into maps', async () => {
      fake.respond({ stdout: 'a: 0 2048 thin 0 -\nb: 0 4096 thin 128 127\n' });
      const m = await dm.thinStatusAll(ctx);
      assert.deepEqual([...m.keys()], ['a', 'b']);
      assert.equal(m.get('b')?.highestMappedSector, 127);
    });

    it('version and targets', async () => {
      fake.respond({ stdout: 'Library version:   1.02.185 (2022-05-18)\nDriver version:    4.47.0\n' });
      assert.match(await dm.version(ctx), /Driver version:\s+4\.47\.0$/);
      fake.respond({ stdout: 'thin-pool        v1.23.0\nthin             v1.23.0\n' });
      assert.deepEqual(await dm.targets(ctx), ['thin-pool', 'thin']);
      assert.deepEqual(fake.calls().map((c) => c.argv), [['version'], ['targets']]);
    });

    it('refuses names that dmsetup would misread, without running it', async () => {
      for (const bad of ['', '-rf', 'a/b', 'has space', 'x'.repeat(128)]) {
        assert.equal((await failure(dm.remove(ctx, bad))).kind, 'invalid');
      }
      assert.equal((await failure(dm.message(ctx, 'pool', '--help'))).kind, 'invalid');
      assert.equal(fake.calls().length, 0);
    });
  });

  describe('environment', () => {
    it('always runs in the C locale; udev:false sets DM_DISABLE_UDEV=1, udev:true does not', async () => {
      await dm.resume(ctx, 'v');
      await new DmsetupDeviceMapper({ binary: fake.binary, udev: true }).resume(ctx, 'v');
      const [noUdev, withUdev] = fake.calls();
      assert.deepEqual(noUdev?.env, { LC_ALL: 'C', DM_DISABLE_UDEV: '1' });
      assert.deepEqual(withUdev?.env, { LC_ALL: 'C', DM_DISABLE_UDEV: '<unset>' });
    });

    it("udev:'auto' follows the presence of udev's control socket", async () => {
      const control = join(fake.dir, 'udev-control');
      const auto = new DmsetupDeviceMapper({ binary: fake.binary, udev: 'auto', udevControlPath: control });
      await auto.resume(ctx, 'v');
      writeFileSync(control, '');
      await auto.resume(ctx, 'v');
      assert.deepEqual(fake.calls().map((c) => c.env.DM_DISABLE_UDEV), ['1', '<unset>']);
    });
  });

  describe('error classification', () => {
    const ioctl = (op: string, name: string, text: string): string =>
      `device-mapper: ${op} ioctl on ${name}  failed: ${text}\nCommand failed.\n`;
    // Failures with no recording: EOPNOTSUPP (pool read-only), ENOSPC, a host without dm, no udev.
    const cases: Array<[string, string, DmErrorKind, string | undefined]> = [
      ['message in a read-only pool', ioctl('message', 'pool', 'Operation not supported'), 'invalid', 'EOPNOTSUPP'],
      ['reload ENODEV', ioctl('reload', 'v', 'No such device'), 'not_found', 'ENODEV'],
      ['ENOSPC', ioctl('resume', 'v', 'No space left on device'), 'no_space', 'ENOSPC'],
      ['status of a missing device', 'Device does not exist.\nCommand failed.\n', 'not_found', undefined],
      ['no device-mapper in the kernel',
        '/dev/mapper/control: open failed: No such device\nFailure to communicate with kernel device-mapper driver.\n'
        + 'Check that device-mapper is available in the kernel.\n'
        + 'Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version).\nCommand failed.\n', 'unsupported', 'ENODEV'],
      ['udev never made the node', 'Device /dev/mapper/v not found\nCommand failed.\n', 'unknown', undefined],
      ['anything else', 'something odd\n', 'unknown', undefined],
    ];
    for (const [title, stderr, kind, errno] of cases) {
      it(`${title} → ${kind}`, async () => {
        fake.respond({ stderr, code: 1 });
        const err = await failure(dm.resume(ctx, 'v'));
        assert.equal(err.kind, kind);
        assert.equal(err.errno, errno);
        assert.equal(err.exitCode, 1);
        assert.equal(err.stderr, stderr.trimEnd());
        assert.match(err.message, /^dmsetup resume v: /);
      });
    }

    type Call = (dm: DmsetupDeviceMapper) => Promise<unknown>;
    const msg = (m: string): Call => (d) => d.message(ctx, 'smoke-pool', m);
    const recordedCases: Array<[string, Call, DmErrorKind, string | undefined]> = [
      ['err-create-name-exists.txt', (d) => d.create(ctx, 'smoke-thin', '0 2097152 thin /dev/mapper/smoke-pool 0'), 'exists', 'EBUSY'],
      ['err-create-thin-missing-id.txt', (d) => d.create(ctx, 'smoke-missing', '0 2097152 thin /dev/mapper/smoke-pool 77'), 'no_data', 'ENODATA'],
      ['err-create-thin-exists.txt', msg('create_thin 0'), 'exists', 'EEXIST'],
      ['err-create-snap-exists.txt', msg('create_snap 1 0'), 'exists', 'EEXIST'],
      ['err-create-snap-missing-origin.txt', msg('create_snap 8 42'), 'no_data', 'ENODATA'],
      ['err-delete-missing.txt', msg('delete 99'), 'no_data', 'ENODATA'],
      ['err-delete-active.txt', msg('delete 0'), 'busy', 'EBUSY'],
      ['err-set-transaction-id-mismatch.txt', msg('set_transaction_id 5 6'), 'invalid', 'EINVAL'],
      ['err-message-unknown.txt', msg('frobnicate 1'), 'invalid', 'EINVAL'],
      ['err-message-nonexistent.txt', (d) => d.message(ctx, 'nonexistent', 'create_thin 7'), 'not_found', 'ENXIO'],
      ['err-remove-busy.txt', (d) => d.remove(ctx, 'smoke-thin'), 'busy', 'EBUSY'],
      ['err-reserve-metadata-snap-held.txt', (d) => d.message(ctx, 'smoke-pool', 'reserve_metadata_snap'), 'busy', 'EBUSY'],
      ['err-remove-pool-busy.txt', (d) => d.remove(ctx, 'smoke-pool'), 'busy', 'EBUSY'],
      ['err-remove-nonexistent.txt', (d) => d.remove(ctx, 'nonexistent'), 'not_found', 'ENXIO'],
      ['err-suspend-nonexistent.txt', (d) => d.suspend(ctx, 'nonexistent'), 'not_found', 'ENXIO'],
      ['err-resume-nonexistent.txt', (d) => d.resume(ctx, 'nonexistent'), 'not_found', 'ENXIO'],
      ['err-status-nonexistent.txt', (d) => d.thinStatus(ctx, 'nonexistent'), 'not_found', undefined],
      ['err-table-nonexistent.txt', (d) => d.thinTable(ctx, 'nonexistent'), 'not_found', 'ENXIO'],
    ];
    for (const [file, call, kind, errno] of recordedCases) {
      it(`recorded ${file} → ${kind}`, async () => {
        const { exit, stderr } = recordedFailure(file);
        fake.respond({ stderr, code: exit });
        const err = await failure(call(dm));
        assert.deepEqual([err.kind, err.errno, err.exitCode], [kind, errno, exit]);
        assert.equal(err.stderr, stderr.trimEnd());
      });
    }

    it('recorded: info of a missing device (both forms of the error) is undefined', async () => {
      for (const file of ['err-info-c-nonexistent.txt', 'err-info-nonexistent.txt']) {
        const { exit, stderr } = recordedFailure(file);
        fake.respond({ stderr, code: exit });
        assert.equal(await dm.info(ctx, 'nonexistent'), undefined);
      }
    });

    it('a missing binary is unsupported', async () => {
      const gone = new DmsetupDeviceMapper({ binary: join(fake.dir, 'no-such-dmsetup'), udev: false });
      const err = await failure(gone.version(ctx));
      assert.equal(err.kind, 'unsupported');
      assert.equal(err.errno, 'ENOENT');
    });

    it('a hung dmsetup is killed and reported as timeout', async () => {
      fake.respond({ sleepSeconds: 20 });
      const slow = new DmsetupDeviceMapper({ binary: fake.binary, udev: false, maxMs: 300 });
      const started = Date.now();
      assert.equal((await failure(slow.resume(ctx, 'v'))).kind, 'timeout');
      assert.ok(Date.now() - started < 5000);
    });

    it('info of a missing device is undefined, other info failures throw', async () => {
      fake.respond({ stderr: 'Device does not exist.\nCommand failed.\n', code: 1 });
      assert.equal(await dm.info(ctx, 'gone'), undefined);
      fake.respond({ stderr: '/dev/mapper/control: open failed: Permission denied\nCommand failed.\n', code: 1 });
      assert.equal((await failure(dm.info(ctx, 'v'))).kind, 'unsupported');
    });

    it('a listing survives a device vanishing mid-walk, but not a real failure', async () => {
      fake.respond({ stdout: 'a: 0 2048 thin 0 -\n', stderr: 'Device does not exist.\nCommand failed.\n', code: 1 });
      assert.deepEqual([...(await dm.thinStatusAll(ctx)).keys()], ['a']);
      fake.respond({ stdout: 'a|254|1|L--w|0|1|0|\n', stderr: 'Device does not exist.\nCommand failed.\n', code: 1 });
      assert.deepEqual((await dm.infoAll(ctx)).map((i) => i.name), ['a']);
      fake.respond({ stdout: 'a: 0 2048 thin 0 -\n', stderr: ioctl('status', 'b', 'Invalid argument'), code: 1 });
      assert.equal((await failure(dm.thinStatusAll(ctx))).kind, 'invalid');
    });

    it('unparseable output is unknown; a device of the wrong kind is invalid', async () => {
      fake.respond({ stdout: 'garbage\n' });
      assert.equal((await failure(dm.poolStatus(ctx, 'pool'))).kind, 'unknown');
      fake.respond({ stdout: '0 2048 linear 7:0 0\n' });
      const err = await failure(dm.poolStatus(ctx, 'pool'));
      assert.equal(err.kind, 'invalid');
      assert.match(err.message, /target is linear, not thin-pool/);
    });
  });
});
