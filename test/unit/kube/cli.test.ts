// `dmthin-csi controller` as a process against the API server TEST DOUBLE: KUBECONFIG is
// honoured, the leader Lease is taken in --lease-namespace, the CSI socket is served, SIGTERM stops it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startApiDouble } from '../../doubles/kube-api/index.ts';
import { loadCrds, until } from './harness.ts';

const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

it('controller command: takes the lease, serves the socket, stops on SIGTERM', async () => {
  const d = await startApiDouble({ crds: loadCrds() });
  const dir = await mkdtemp(join(tmpdir(), 'dmthin-cli-'));
  try {
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, d.kubeConfig().exportConfig()); // JSON is YAML
    const sock = join(dir, 'csi.sock');
    const child = spawn(process.execPath, [MAIN, 'controller', '--endpoint', `unix://${sock}`, '--lease-namespace', 'dmthin', '--log-level', 'error'], {
      env: { ...process.env, KUBECONFIG: kubeconfig, POD_NAME: 'ctl-a', KUBERNETES_SERVICE_HOST: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await until(() => existsSync(sock), `socket (stderr: ${stderr})`, 15000);
    const lease = d.object('leases.coordination.k8s.io', 'dmthin-csi-controller', 'dmthin') as { spec: { holderIdentity: string } } | undefined;
    assert.equal(lease?.spec.holderIdentity, 'ctl-a');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    const released = d.object('leases.coordination.k8s.io', 'dmthin-csi-controller', 'dmthin') as { spec: { holderIdentity: string } };
    assert.equal(released.spec.holderIdentity, '', 'SIGTERM hands the lease back');
  } finally {
    await rm(dir, { recursive: true, force: true });
    await d.close();
  }
});
