/** `dmthin-csi status` and `doctor`: formatting and check logic with injected command runners. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { checkKernel, checkPool, checkTool, dmMiscMinor, type DoctorDeps, formatChecks, runChecks, systemDoctorDeps, TOOLS, versionIn } from '../../../src/cli/doctor.ts';
import { versionBelow } from '../../../src/system/version.ts';
import { collectStatus, formatBytes, formatStatus, type Runner, withoutDmsetupUnlessDm } from '../../../src/cli/status.ts';
import { FileStore } from '../../../src/state/file.ts';
import type { DeviceRecord } from '../../../src/state/types.ts';
import { CommandError } from '../../../src/system/exec.ts';

type Script = Record<string, string | { exit: number; stdout?: string; stderr?: string } | 'ENOENT'>;

/** A runner answering "command arg..." from a script; anything else fails like a missing command. */
function fakeRunner(script: Script): Runner & { calls: string[] } {
  const calls: string[] = [];
  const runner = async (command: string, args: readonly string[]) => {
    const key = [command, ...args].join(' ');
    calls.push(key);
    const answer = script[key];
    const fail = (exitCode: number | undefined, stdout: string, stderr: string, errno?: string) => new CommandError({
      command, args, exitCode, stdout, stderr, errno, timedOut: false, message: `${key}: ${exitCode === undefined ? 'spawn failed' : `exit code ${exitCode}`}${stderr ? `: ${stderr}` : ''}`,
    });
    if (answer === undefined || answer === 'ENOENT') throw fail(undefined, '', '', 'ENOENT');
    if (typeof answer === 'string') return { stdout: answer, stderr: '' };
    throw fail(answer.exit, answer.stdout ?? '', answer.stderr ?? '');
  };
  return Object.assign(runner, { calls });
}

const MISC_WITH_DM = ' 57 memory_bandwidth\n236 device-mapper\n237 loop-control\n';
const MISC_WITHOUT_DM = '237 loop-control\n229 fuse\n';

/** A host for doctor: /proc/misc and /dev/mapper/control as given (by default a kernel with device-mapper). */
function host(o: { runner: Runner; misc?: string; control?: { major: number; minor: number } | undefined; path?: string }): DoctorDeps {
  const control = 'control' in o ? o.control : { major: 10, minor: 236 };
  return {
    runner: o.runner, exists: () => false, path: o.path ?? '',
    readText: (p) => (p === '/proc/misc' ? o.misc ?? MISC_WITH_DM : undefined),
    deviceNumber: (p) => (p === '/dev/mapper/control' ? control : undefined),
  };
}

const POOL_STATUS = '0 2097152 thin-pool 7 280/262144 1024/32768 - rw discard_passdown queue_if_no_space - 1024';
const POOL_TABLE = '0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing';

function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id, dmName: `dmthin-${id}`, kind: 'volume', deviceId: 1, sizeBytes: 1024 ** 3, state: 'Activated', meta: {},
    createdAt: '2026-11-23T00:00:00Z', updatedAt: '2026-11-23T00:00:00Z', ...over,
  };
}

test('formatBytes uses binary units', () => {
  assert.deepEqual([0, 512, 1024, 1536, 10 * 1024 ** 3, 1.25 * 1024 ** 4].map(formatBytes), ['0', '512', '1Ki', '1.5Ki', '10Gi', '1.25Ti']);
});

test('status: pool usage from dmsetup and a volume table from the store, read while the driver holds its lock', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmthin-status-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await FileStore.open(path.join(dir, 'store')); // holds the lock, like a running driver
  t.after(() => store.close());
  await store.updatePool(() => ({ name: 'mypool', transactionId: 7, updatedAt: '2026-11-23T00:00:00Z' }));
  await store.createDevice(device('pvc-a', { deviceId: 1 }));
  await store.createDevice(device('snap-b', { kind: 'snapshot', deviceId: 2, origin: 'pvc-a', state: 'Deactivated' }));
  await store.createDevice(device('pvc-c', { deviceId: 3, state: 'Faulty', error: 'Activating: dmsetup create: Device or\nresource busy' }));
  writeFileSync(path.join(dir, 'store/devices/broken.json'), '{not json');
  const runner = fakeRunner({
    'dmsetup status mypool': POOL_STATUS,
    'dmsetup table mypool': POOL_TABLE,
    'dmsetup status --target thin': 'dmthin-pvc-a: 0 2097152 thin 204800 2097151\ndmthin-pvc-c: 0 2097152 thin Fail',
  });
  const report = await collectStatus(runner, dir);
  assert.equal(report.pool.name, 'mypool', 'pool name from the store record');
  assert.equal(report.pool.blockBytes, 65536);
  assert.equal(report.problems.length, 1);
  assert.match(report.problems[0]!, /^devices\/broken\.json: /);
  assert.equal(formatStatus(report), [
    'Pool mypool: mode rw, transaction 7',
    '  data      64Mi / 2Gi (3.1%), block 64Ki',
    '  metadata  1.09Mi / 1Gi (0.1%)',
    '',
    'ID      KIND      SIZE  USED   STATE        DEVICE  ORIGIN  ERROR',
    'pvc-a   volume    1Gi   100Mi  Activated    1       -',
    'pvc-c   volume    1Gi   -      Faulty       3       -       Activating: dmsetup create: Device or resource busy',
    'snap-b  snapshot  1Gi   -      Deactivated  2       pvc-a',
    '',
    '1 device(s) Faulty: see README "Recovering a Faulty volume".',
    `unreadable record: ${report.problems[0]}`,
    '',
  ].join('\n'));
});

test('status: no pool, no store', async () => {
  const report = await collectStatus(fakeRunner({}), '/nonexistent-dmthin', 'p');
  assert.equal(formatStatus(report), 'Pool p: unavailable (dmsetup status p: spawn failed)\n\nNo volumes or snapshots in /nonexistent-dmthin/store.\n');
  const failed = await collectStatus(fakeRunner({ 'dmsetup status p': '0 2097152 thin-pool Fail' }), '/nonexistent-dmthin', 'p');
  assert.match(formatStatus(failed), /^Pool p: FAILED/);
  const full = await collectStatus(fakeRunner({ 'dmsetup status p': POOL_STATUS.replace(' rw ', ' out_of_data_space ') }), '/nonexistent-dmthin', 'p');
  assert.match(formatStatus(full), /data {6}1024 \/ 32768 blocks \(3\.1%\)\n.*\n {2}WARNING: out of data space/);
});

test('status: records from another source (the custom resources in Kubernetes mode)', async () => {
  const runner = fakeRunner({ 'dmthin-pool-x status': '', 'dmsetup status kpool': POOL_STATUS, 'dmsetup table kpool': POOL_TABLE });
  const report = await collectStatus(runner, '/unused', undefined, async () => ({
    pool: { name: 'kpool', transactionId: 7, updatedAt: '' }, devices: [device('pvc-k', { state: 'Faulty', error: 'boom' })], problems: [],
  }));
  const text = formatStatus({ ...report, source: 'the custom resources of node n1' });
  assert.match(text, /^Pool kpool: mode rw/);
  assert.match(text, /\npvc-k +volume +1Gi +- +Faulty +1 +- +boom\n/);
  const empty = await collectStatus(runner, '/unused', 'kpool', async () => ({ devices: [], problems: [] }));
  assert.match(formatStatus({ ...empty, source: 'the custom resources of node n1' }), /No volumes or snapshots in the custom resources of node n1\./);
});

test('versionIn finds the version in each tool\'s own format', () => {
  assert.equal(versionIn('mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0', 'mke2fs'), '1.47.0');
  assert.equal(versionIn('mkfs.xfs version 6.1.0'), '6.1.0');
  assert.equal(versionIn('blkid from util-linux 2.38.1  (libblkid 2.38.1, 04-Aug-2022)'), '2.38.1');
  assert.equal(versionIn('0.9.0'), '0.9.0');
  assert.equal(versionIn('no digits'), undefined);
});

test('doctor: a healthy node passes every check', async () => {
  const runner = fakeRunner({
    'dmsetup targets': 'thin-pool        v1.23.0\nthin             v1.23.0\nstriped          v1.6.0',
    'dmsetup version': 'Library version:   1.02.185 (2022-05-18)\nDriver version:    4.48.0',
    'mkfs.ext4 -V': 'mke2fs 1.47.0 (5-Feb-2023)',
    resize2fs: { exit: 1, stderr: 'resize2fs 1.47.0 (5-Feb-2023)\nUsage: resize2fs [-d debug_flags] ...' },
    'mkfs.xfs -V': 'mkfs.xfs version 6.1.0',
    'xfs_growfs -V': 'xfs_growfs version 6.1.0',
    'blkid -V': 'blkid from util-linux 2.38.1  (libblkid 2.38.1, 04-Aug-2022)',
    'losetup --version': 'losetup from util-linux 2.38.1',
    'thin_check -V': '0.9.0',
    'thin_ls -V': '0.9.0',
    'dmsetup status mypool': POOL_STATUS,
  });
  const results = await runChecks(host({ runner }), 'mypool');
  assert.deepEqual(results.filter((r) => r.level !== 'ok'), []);
  const text = formatChecks(results);
  assert.match(text, /\[ OK \] dmsetup +version library 1\.02\.185, kernel driver 4\.48\.0\n/);
  assert.match(text, /\[ OK \] resize2fs +version 1\.47\.0\n/);
  assert.match(text, /\[ OK \] pool mypool data +3\.1% used \(1024\/32768 blocks\)\n/);
  assert.match(text, /All checks passed\.\n$/);
});

test('doctor: says what to fix for a node without dm-thin or tools', async () => {
  const runner = fakeRunner({ 'dmsetup targets': 'striped          v1.6.0\nlinear           v1.4.0' });
  const kernel = await checkKernel(host({ runner }));
  assert.deepEqual(kernel.map((r) => [r.level, r.name]), [['ok', '/dev/mapper/control'], ['fail', 'dm-thin targets']]);
  assert.match(kernel[1]!.detail, /thin-pool and thin not loaded \(have: striped, linear\)/);
  assert.match(kernel[1]!.fix!, /modprobe dm-thin-pool/);
  const missing = await checkTool(runner, TOOLS.find((x) => x.command === 'thin_check')!);
  assert.equal(missing.level, 'fail');
  assert.match(missing.fix!, /apt-get install thin-provisioning-tools/);
  const text = formatChecks([...kernel, missing]);
  assert.match(text, /\[FAIL\] thin_check +not found \(needed for checking pool metadata\)\n {7}fix: install the thin-provisioning-tools package/);
  assert.match(text, /2 check\(s\) failed\.\n$/);
});

test('doctor: on a kernel without device-mapper it runs no dmsetup (libdevmapper would create /dev/mapper/control)', async () => {
  const runner = fakeRunner({ 'mkfs.ext4 -V': 'mke2fs 1.47.0 (5-Feb-2023)' });
  const noDm = host({ runner, misc: MISC_WITHOUT_DM, control: undefined, path: '/usr/sbin:/usr/bin' });
  const results = await runChecks({ ...noDm, exists: (p) => p === '/usr/sbin/dmsetup' }, 'mypool');
  assert.deepEqual(runner.calls.filter((c) => c.startsWith('dmsetup')), [], 'no dmsetup run at all');
  const by = new Map(results.map((r) => [r.name, r]));
  assert.equal(by.get('/dev/mapper/control')?.level, 'fail');
  assert.match(by.get('/dev/mapper/control')!.detail, /not in this kernel \(\/proc\/misc has no device-mapper\)/);
  assert.match(by.get('dm-thin targets')!.detail, /^not checked/);
  assert.deepEqual([by.get('dmsetup')?.level, by.get('dmsetup')?.detail], ['ok', 'present (not run: without device-mapper it would create /dev/mapper/control)']);
  assert.equal(by.get('pool mypool')?.level, 'fail');
  const gone = await runChecks({ ...noDm, exists: () => false });
  assert.equal(gone.find((r) => r.name === 'dmsetup')?.level, 'fail', 'a dmsetup not on PATH is still reported');
});

test('doctor: a control node missing or with the wrong number is reported, and dmsetup is not run', async () => {
  const runner = fakeRunner({});
  const missing = await checkKernel(host({ runner, control: undefined }));
  assert.match(missing[0]!.detail, /^missing although the kernel has device-mapper \(misc 10:236\)/);
  const wrong = await checkKernel(host({ runner, control: { major: 10, minor: 237 } }));
  assert.match(wrong[0]!.detail, /is 10:237, the kernel's device-mapper is 10:236/);
  assert.deepEqual(runner.calls, []);
  assert.equal(dmMiscMinor(MISC_WITH_DM), 236);
  assert.equal(dmMiscMinor(MISC_WITHOUT_DM), undefined);
});

test('doctor: the real host deps read the device number of a node', () => {
  assert.deepEqual(systemDoctorDeps.deviceNumber('/dev/null'), { major: 1, minor: 3 });
  assert.equal(systemDoctorDeps.deviceNumber('/no/such/node'), undefined);
  assert.equal(systemDoctorDeps.deviceNumber('/dev'), undefined, 'a directory is no device');
});

test('doctor: an mke2fs older than 1.47 is a warning that says what it costs', async () => {
  const ext4 = TOOLS.find((x) => x.command === 'mkfs.ext4')!;
  const old = await checkTool(fakeRunner({ 'mkfs.ext4 -V': 'mke2fs 1.46.5 (30-Dec-2021)' }), ext4);
  assert.equal(old.level, 'warn');
  assert.match(old.detail, /^version 1\.46\.5: .*assume_storage_prezeroed/);
  assert.equal(old.fix, 'install e2fsprogs 1.47 or later');
  assert.equal((await checkTool(fakeRunner({ 'mkfs.ext4 -V': 'mke2fs 1.47.0 (5-Feb-2023)' }), ext4)).level, 'ok');
  assert.deepEqual(['1.46.5', '1.47', '1.47.0', '1.48', '2.0', '1.9'].map((v) => versionBelow(v, '1.47')), [true, false, false, false, false, true]);
});

test('doctor: pool states', async () => {
  const level = async (status: string) => (await checkPool(fakeRunner({ 'dmsetup status p': status }), 'p')).map((r) => `${r.level} ${r.name}`);
  assert.deepEqual(await level('0 2097152 thin-pool Fail'), ['fail pool p']);
  assert.deepEqual(await level(POOL_STATUS.replace(' rw ', ' ro ')), ['fail pool p', 'ok pool p data', 'ok pool p metadata']);
  assert.deepEqual(await level(POOL_STATUS.replace(' - rw', ' - rw').replace('queue_if_no_space -', 'queue_if_no_space needs_check')),
    ['ok pool p', 'fail pool p metadata', 'ok pool p data', 'ok pool p metadata']);
  assert.deepEqual(await level(POOL_STATUS.replace('1024/32768', '30000/32768')), ['ok pool p', 'warn pool p data', 'ok pool p metadata']);
  assert.deepEqual(await level('0 2097152 linear 7:0 0'), ['fail pool p']);
  assert.deepEqual((await checkPool(fakeRunner({}), 'p')).map((r) => r.level), ['fail']);
});

test('`dmthin-csi help` lists status and doctor', async () => {
  const { execFileSync } = await import('node:child_process');
  const main = path.join(import.meta.dirname, '../../../src/cli/main.ts');
  const help = execFileSync(process.execPath, [main, 'help'], { encoding: 'utf8' });
  assert.match(help, /status {7}print the pool/);
  assert.match(help, /doctor {7}check this node/);
});

test('status: on a kernel without device-mapper it runs no dmsetup, and says why the pool is unavailable', async () => {
  const runner = fakeRunner({ 'dmsetup status p': POOL_STATUS });
  const report = await collectStatus(withoutDmsetupUnlessDm(runner, MISC_WITHOUT_DM), '/nonexistent', 'p');
  assert.deepEqual(runner.calls, []);
  assert.equal(formatStatus(report).split('\n')[0], 'Pool p: unavailable (device-mapper is not in this kernel (/proc/misc has no device-mapper))');
  for (const misc of [MISC_WITH_DM, undefined]) {
    assert.equal(withoutDmsetupUnlessDm(runner, misc), runner, 'with device-mapper (or no /proc to tell), dmsetup runs');
  }
});
