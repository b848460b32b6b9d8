/**
 * `dmthin-csi controller` without a reachable API server: it says so, serves no CSI and makes no
 * socket until the server answers, keeps /healthz at not ready, retries with back-off, and
 * stops cleanly on SIGTERM. A missing socket directory is refused, not made.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { API_RETRY_MS, untilApiServer } from '../../../src/cli/kube.ts';
import { FallingRate } from '../../../src/observability/log.ts';
import { until } from '../kube/harness.ts';

const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

function kubeconfigTo(dir: string, server: string): string {
  const file = join(dir, 'kubeconfig');
  writeFileSync(file, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'k', cluster: { server } }], users: [{ name: 'u', user: { token: 't' } }],
    contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
  }));
  return file;
}

describe('controller with no reachable API server', () => {
  it('says so, serves no CSI, answers /healthz not ready, and stops on SIGTERM', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'dmthin-ctl-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const [apiPort, metricsPort] = [await closedPort(), await closedPort()];
    const sock = join(dir, 'csi.sock');
    const child = spawn(process.execPath, [MAIN, 'controller', '--endpoint', `unix://${sock}`, '--metrics-address', `127.0.0.1:${metricsPort}`], {
      env: { ...process.env, KUBECONFIG: kubeconfigTo(dir, `https://127.0.0.1:${apiPort}`), KUBERNETES_SERVICE_HOST: '', POD_NAME: 'ctl-x' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const lines = () => stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    await until(() => lines().filter((l) => String(l.message).startsWith('cannot reach')).length >= 2, `two attempts (stderr: ${stderr})`, 15_000);
    const attempts = lines().filter((l) => String(l.message).startsWith('cannot reach'));
    assert.equal(attempts[0]!.message, 'cannot reach the Kubernetes API server: not serving CSI until it answers');
    assert.equal(attempts[0]!.server, `https://127.0.0.1:${apiPort}`);
    assert.deepEqual(attempts.slice(0, 2).map((a) => a.retry_in_s), [1, 2], 'the retries back off');
    assert.ok(!lines().some((l) => l.message === 'serving CSI'), 'no "serving CSI" before it can serve');
    assert.ok(!existsSync(sock), 'no socket');
    const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    assert.equal(health.status, 503);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  });

  it('refuses a socket directory that does not exist, and does not make it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmthin-ctl-'));
    try {
      const r = spawnSync(process.execPath, [MAIN, 'controller', '--endpoint', `unix://${dir}/csi/csi.sock`], { encoding: 'utf8', env: { ...process.env, KUBECONFIG: kubeconfigTo(dir, 'https://127.0.0.1:1') } });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`dmthin-csi: the directory ${dir}/csi of --endpoint unix://${dir}/csi/csi\\.sock does not exist: in a pod it is the volume the sidecars share`));
      assert.ok(!existsSync(join(dir, 'csi')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('untilApiServer', () => {
  const log = () => {
    const lines: Record<string, unknown>[] = [];
    return { lines, error: (message: string, meta: object) => { lines.push({ message, ...meta }); } };
  };
  it('waits with doubling delays up to the cap, and any HTTP answer (a 404) ends the wait', async (t) => {
    t.mock.property(API_RETRY_MS, 'first', 1);
    t.mock.property(API_RETRY_MS, 'max', 4);
    let calls = 0;
    const coord = { readNamespacedLease: async () => { calls++; throw calls < 5 ? Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) : Object.assign(new Error('not found'), { code: 404 }); } };
    const l = log();
    assert.equal(await untilApiServer(coord as never, 'ns', 'https://x', l as never, new Promise(() => {})), true);
    assert.deepEqual(l.lines.map((x) => [x.attempt, x.retry_in_s]), [[1, 0.001], [2, 0.002], [3, 0.004], [4, 0.004]]);
  });
  it('ends, false, when the command is stopped while waiting', async () => {
    const coord = { readNamespacedLease: async () => { throw new Error('connect ECONNREFUSED'); } };
    assert.equal(await untilApiServer(coord as never, 'ns', 'https://x', log() as never, Promise.resolve()), false);
  });
});

describe('FallingRate', () => {
  it('logs the first failure, then at doubling intervals, counting the ones it did not log', () => {
    const r = new FallingRate(10, 40);
    const logged = [0, 5, 10, 15, 30, 35, 70, 100, 110, 150].map((at) => [at, r.failed(at)]).filter(([, n]) => n !== undefined);
    assert.deepEqual(logged, [[0, 1], [10, 2], [30, 2], [70, 2], [110, 2], [150, 1]]);
    r.reset();
    assert.equal(r.failed(151), 1, 'after a success the next failure is logged at once');
  });
});
