/** A bad command line is the CLI's own UsageError, never a CSI error, and exits 2 with its message. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { buildConfig, CONTROLLER_USAGE, controllerConfig, parseFlags, USAGE } from '../../../src/cli/config.ts';
import { parseRatio, parseSize, UsageError } from '../../../src/cli/flags.ts';
import { runStatus, STATUS_USAGE } from '../../../src/cli/status.ts';
import { CsiError } from '../../../src/errors.ts';

const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

function usageError(fn: () => unknown, message: RegExp): string {
  let text = '';
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `a UsageError, not ${String(err)}`);
    assert.ok(!(err instanceof CsiError));
    assert.match(err.message, message);
    text = err.message;
    return true;
  });
  return text;
}

/** The CLI as a process: exit code and stderr. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const p = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, NODE_ID: '', NODE_NAME: '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  return new Promise((resolve) => p.on('exit', (code) => resolve({ code, stderr })));
}

describe('UsageError', () => {
  it('is what every flag check throws, with the usage where the line did not parse', async () => {
    assert.ok(usageError(() => parseFlags(['--no-such-flag']), /--no-such-flag/).endsWith(`\n${USAGE}`));
    usageError(() => buildConfig(parseFlags(['--pool-name', 'a b']), {}), /--pool-name "a b" is not a valid device-mapper name/);
    usageError(() => buildConfig(parseFlags(['--pool-data-device', '/dev/x']), {}), /go together/);
    usageError(() => buildConfig(parseFlags(['--default-fs', 'btrfs']), {}), /--default-fs "btrfs" is not supported/);
    usageError(() => parseSize('ten', '--loop-data-size'), /--loop-data-size: "ten" is not a size/);
    usageError(() => parseSize('0', '--block-size'), /out of range/);
    usageError(() => parseRatio('-1', '--overprovision-ratio'), /between 0 and 1000/);
    assert.ok(usageError(() => controllerConfig(['--pool-name', 'p'], {}), /--pool-name/).endsWith(`\n${CONTROLLER_USAGE}`), 'no pool flags in controller mode');
    await assert.rejects(runStatus(['--source', 'db'], async () => ({ stdout: '', stderr: '' }), {}), (err: unknown) =>
      err instanceof UsageError && err.message === `--source must be file or kube\n${STATUS_USAGE}`);
  });

  it('exits 2 with its message, no stack, in every command', async () => {
    const [standalone, controller, node, status] = await Promise.all([
      cli(['--no-such-flag']), cli(['controller', '--no-such-flag']), cli(['node']), cli(['status', '--source', 'kube'], { NODE_NAME: '' }),
    ]);
    assert.equal(standalone.code, 2, standalone.stderr);
    assert.match(standalone.stderr, /^dmthin-csi: Unknown option '--no-such-flag'[^]*\nUsage: dmthin-csi \[standalone\] \[flags\]\n/);
    assert.equal(controller.code, 2, controller.stderr);
    assert.match(controller.stderr, /^dmthin-csi: Unknown option '--no-such-flag'[^]*\nUsage: dmthin-csi controller \[flags\]\n/);
    assert.equal(node.code, 2, node.stderr);
    assert.match(node.stderr, /^dmthin-csi: --node-id is required \(the Kubernetes node name\)\nUsage: dmthin-csi node --node-id NAME/);
    assert.equal(status.code, 2, status.stderr);
    assert.match(status.stderr, /^dmthin-csi: --source kube needs --node or NODE_NAME\n/);
    for (const r of [standalone, controller, node, status]) assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});

describe('controller flags', () => {
  it('default as before, when neither a flag nor the environment says', () => {
    assert.deepEqual(controllerConfig([], {}), {
      endpoint: 'unix:///csi/csi.sock', metricsAddress: undefined, leaseNamespace: 'kube-system', identity: hostname(), defaultFs: 'ext4', logLevel: 'info', deprecations: [],
    });
  });
  it('take the environment, and a flag over it', () => {
    const env = { CSI_ENDPOINT: 'unix:///e.sock', DMTHIN_METRICS_ADDRESS: ':9', POD_NAMESPACE: 'ns', POD_NAME: 'ctl-b', DMTHIN_LOG_LEVEL: 'debug' };
    assert.deepEqual(controllerConfig([], env), {
      endpoint: 'unix:///e.sock', metricsAddress: ':9', leaseNamespace: 'ns', identity: 'ctl-b', defaultFs: 'ext4', logLevel: 'debug', deprecations: [],
    });
    const flags = ['--endpoint', 'unix:///f.sock', '--metrics-address', ':8', '--lease-namespace', 'dmthin', '--default-fs', 'xfs', '--log-level', 'warn'];
    assert.deepEqual(controllerConfig(flags, env), {
      endpoint: 'unix:///f.sock', metricsAddress: ':8', leaseNamespace: 'dmthin', identity: 'ctl-b', defaultFs: 'xfs', logLevel: 'warn', deprecations: [],
    });
  });
  it('still read the previous release\'s variable names, each with a deprecation', () => {
    const cfg = controllerConfig([], { METRICS_ADDRESS: ':7', LOG_LEVEL: 'debug' });
    assert.equal(cfg.metricsAddress, ':7');
    assert.equal(cfg.logLevel, 'debug');
    assert.deepEqual(cfg.deprecations, [
      'METRICS_ADDRESS is deprecated and will be removed in the next release: set DMTHIN_METRICS_ADDRESS instead',
      'LOG_LEVEL is deprecated and will be removed in the next release: set DMTHIN_LOG_LEVEL instead',
    ]);
    assert.deepEqual(controllerConfig([], { LOG_LEVEL: 'debug', DMTHIN_LOG_LEVEL: 'error' }), { ...controllerConfig([], {}), logLevel: 'error' }, 'the new name wins, without a warning');
  });
});
