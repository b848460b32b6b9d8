/** The README's run command, as a user types it, inside the guest: `npm start` serves a working driver. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { describe, it } from 'node:test';
import { connectCsi, GiB, mountCap } from '../support/csi-client.ts';
import { KUBELET, POOL, STATE } from './harness.ts';
import { sleep } from '../../src/system/delay.ts';

const ENDPOINT = 'unix:///run/dmthin-npm-start/csi.sock';

describe('npm start', { timeout: 600_000 }, () => {
  it('serves a driver that takes a volume through its lifecycle', async () => {
    rmSync(STATE, { recursive: true, force: true });
    const child = spawn('npm', ['start', '--', '--state-dir', STATE, '--pool-name', POOL, '--loop-data-size', '16Gi'],
      { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, CSI_ENDPOINT: ENDPOINT } });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const csi = connectCsi(ENDPOINT);
    try {
      const until = Date.now() + 300_000;
      for (;;) {
        assert.equal(child.exitCode, null, 'npm start exited early');
        const ready = await csi.identity.call('Probe', {}, 5000).then((r) => r.ready?.value === true, () => false);
        if (ready) break;
        assert.ok(Date.now() < until, 'driver did not become ready');
        await sleep(500);
      }
      const v = (await csi.controller.call('CreateVolume', { name: 'npm-start-vol', capacity_range: { required_bytes: GiB }, volume_capabilities: [mountCap()] })).volume;
      const staging = `${KUBELET}/npm-start/${v.volume_id}`;
      mkdirSync(staging, { recursive: true });
      await csi.node.call('NodeStageVolume', { volume_id: v.volume_id, staging_target_path: staging, volume_capability: mountCap() });
      await csi.node.call('NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: staging });
      await csi.controller.call('DeleteVolume', { volume_id: v.volume_id });
      assert.equal((await csi.controller.call('ListVolumes', {})).entries.length, 0);
    } finally {
      csi.close();
      child.kill('SIGTERM'); // npm passes it on to the driver, which stops cleanly
    }
    assert.equal(await exited, 0, 'npm start stops cleanly on SIGTERM');
  });
});
