/** Each command's own help, the version, log levels, and the environment names with their deprecated forms. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { buildConfig, CONTROLLER_USAGE, controllerConfig, NODE_USAGE, parseFlags, USAGE } from '../../../src/cli/config.ts';
import { DOCTOR_USAGE } from '../../../src/cli/doctor.ts';
import { UsageError } from '../../../src/cli/flags.ts';
import { STATUS_USAGE } from '../../../src/cli/status.ts';
import { VERSION } from '../../../src/version.ts';

const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd: '/', encoding: 'utf8', env: { ...process.env, NODE_ID: '', NODE_NAME: '', LOG_LEVEL: '', DMTHIN_LOG_LEVEL: '', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The default a usage text shows for one flag. */
function shownDefault(usage: string, flag: string): string | undefined {
  const line = usage.split('\n').find((l) => l.trimStart().startsWith(`--${flag} `));
  return line ? /\(default ([^)]+)\)/.exec(line)?.[1] : undefined;
}

describe('help', () => {
  it('COMMAND --help and help COMMAND print that command\'s own usage, and exit 0', () => {
    for (const [command, usage] of [['standalone', USAGE], ['controller', CONTROLLER_USAGE], ['node', NODE_USAGE], ['status', STATUS_USAGE], ['doctor', DOCTOR_USAGE]] as const) {
      for (const args of [[command, '--help'], [command, '-h'], ['help', command]]) {
        const r = cli(args);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${usage}\n`, args.join(' '));
      }
    }
    assert.match(cli(['--help']).stdout, /^Usage: dmthin-csi COMMAND[^]*\nUsage: dmthin-csi \[standalone\] \[flags\]\n/);
    assert.match(cli(['help']).stdout, /^Usage: dmthin-csi COMMAND/);
  });

  it('controller\'s lists its own flags: --lease-namespace, no pool or state flags', () => {
    assert.match(CONTROLLER_USAGE, /\n {2}--lease-namespace NS +namespace of the leader Lease \[POD_NAMESPACE\] \(default kube-system\)\n/);
    for (const absent of ['--state-dir', '--pool-name', '--node-id', '--loop-data-size']) assert.ok(!CONTROLLER_USAGE.includes(absent), absent);
    assert.throws(() => controllerConfig(['--state-dir', '/x'], {}), UsageError);
  });

  it('shows the defaults each command uses, the endpoint included', () => {
    const standalone = buildConfig(parseFlags([]), {});
    const node = buildConfig(parseFlags(['--node-id', 'n1'], 'node'), {}, 'node');
    const controller = controllerConfig([], {});
    assert.equal(shownDefault(USAGE, 'endpoint'), standalone.endpoint);
    assert.equal(shownDefault(NODE_USAGE, 'endpoint'), node.endpoint);
    assert.equal(shownDefault(CONTROLLER_USAGE, 'endpoint'), controller.endpoint);
    assert.notEqual(standalone.endpoint, node.endpoint, 'the two defaults differ, and each help says its own');
    assert.equal(shownDefault(USAGE, 'state-dir'), standalone.stateDir);
    assert.equal(shownDefault(USAGE, 'log-level'), standalone.logLevel);
    assert.equal(shownDefault(CONTROLLER_USAGE, 'lease-namespace'), controller.leaseNamespace);
    assert.equal(shownDefault(USAGE, 'default-fs'), standalone.defaultFs);
    assert.equal(Number(shownDefault(USAGE, 'overprovision-ratio')), standalone.overprovisionRatio);
    assert.equal(shownDefault(USAGE, 'node-id'), 'the hostname');
    assert.equal(standalone.nodeId, hostname());
  });
});

describe('npm start', () => {
  it('runs the bundle with no command of its own, so `npm start -- doctor` runs doctor and `npm start` the standalone driver', () => {
    const start = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start;
    assert.match(start, / dist\/dmthin-csi\.mjs$/, 'npm appends the arguments after --');
    assert.equal(cli(['doctor', '--help']).stdout, `${DOCTOR_USAGE}\n`);
  });
});

describe('--version', () => {
  it('prints src/version.ts\'s version, as --version and as a command', () => {
    for (const args of [['--version'], ['version']]) {
      const r = cli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `dmthin-csi ${VERSION}\n`);
    }
  });
});

describe('--log-level', () => {
  it('takes the levels the driver logs at, in any case', () => {
    for (const [given, level] of [['error', 'error'], ['WARN', 'warn'], ['Info', 'info'], ['debug', 'debug']]) {
      assert.equal(buildConfig(parseFlags(['--log-level', given!]), {}).logLevel, level);
      assert.equal(controllerConfig([], { DMTHIN_LOG_LEVEL: given }).logLevel, level);
    }
  });
  it('refuses any other with exit 2 and one clear line, from the flag or the environment', () => {
    for (const [args, env] of [[['--log-level', 'trace']], [['controller', '--log-level', 'verbose']], [[], { DMTHIN_LOG_LEVEL: 'silly' }]] as const) {
      const r = cli([...args], env ?? {});
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^dmthin-csi: --log-level "(trace|verbose|silly)" is not a log level \(use error, warn, info, debug\)\n$/);
    }
  });
});

describe('environment names', () => {
  it('NODE_NAME names the node; NODE_ID still does for one release, with a deprecation', () => {
    assert.equal(buildConfig(parseFlags([]), { NODE_NAME: 'n1' }).nodeId, 'n1');
    const old = buildConfig(parseFlags([]), { NODE_ID: 'n2' });
    assert.equal(old.nodeId, 'n2');
    assert.deepEqual(old.deprecations, ['NODE_ID is deprecated and will be removed in the next release: set NODE_NAME instead']);
    assert.equal(buildConfig(parseFlags(['--node-id', 'n3']), { NODE_NAME: 'n1', NODE_ID: 'n2' }).nodeId, 'n3', 'the flag wins');
    assert.deepEqual(buildConfig(parseFlags([]), { NODE_NAME: 'n1', NODE_ID: 'n2' }).deprecations, []);
    assert.equal(buildConfig(parseFlags([], 'node'), { NODE_NAME: 'n4' }, 'node').nodeId, 'n4');
  });
  it('the deprecation is logged once, as a JSON warning, before the command goes on', () => {
    const r = cli(['--pool-existing', '--dm-interface', 'dmsetup'], { LOG_LEVEL: 'warn', METRICS_ADDRESS: '127.0.0.1:0', PATH: '/nonexistent' });
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; message: string; detail: string });
    assert.deepEqual(warnings.filter((w) => w.message === 'deprecated').map((w) => [w.level, w.detail.split(' ')[0]]), [['warn', 'METRICS_ADDRESS'], ['warn', 'LOG_LEVEL']], r.stderr);
  });
});
