import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { NewDevice } from '../../../src/pool/devices.ts';
import { reconcile } from '../../../src/pool/reconcile.ts';
import { createVolumeReq, deleteVolumeReq, snapshotReq, stageReq } from '../../support/requests.ts';
import { CONVERGED, convergence, ctx, fakeDriver, GiB, mountCap, type FakeDriver } from '../support/fake-driver.ts';
import { crashEverywhere, crashSwitch, crashTwice } from '../support/crash.ts';

const spec = (id: string, o: Partial<NewDevice> = {}): NewDevice => ({ id, dmName: `dm-${id}`, kind: 'volume', sizeBytes: GiB, meta: {}, ...o });

describe('crash recovery via reconcile', () => {
  it('create: every crash point converges, and the volume can be created again', async () => {
    await crashEverywhere(async () => undefined, (fd) => fd.driver.devices.create(ctx, spec('v')), async (fd) => {
      const rec = await fd.store.getDevice('v');
      if (!rec) await fd.driver.devices.create(ctx, spec('v'));
      assert.equal((await fd.store.getDevice('v'))?.state, 'Created');
      assert.deepEqual(await convergence(fd), CONVERGED);
    });
  });

  it('snapshot of an active origin: every crash point converges with the origin resumed', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), async (fd) => {
      const v = await fd.store.getDevice('v');
      assert.equal(v?.state, 'Activated');
      assert.equal((await fd.dm.info(ctx, 'dm-v'))?.suspended, false);
    });
  });

  it('snapshot of an inactive origin: every crash point converges', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
    }, (fd) => fd.driver.devices.create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), async (fd) => {
      assert.equal((await fd.store.getDevice('v'))?.state, 'Created');
    });
  });

  it('deactivate: every crash point converges', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.deactivate(ctx, 'v'));
  });

  it('delete: every crash point converges', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.remove(ctx, 'v'), async (fd) => {
      await fd.driver.devices.remove(ctx, 'v');
      assert.equal(await fd.store.getDevice('v'), undefined);
      assert.deepEqual(await convergence(fd), CONVERGED);
    });
  });

  it('resize of a live device: at every crash point the record never claims more than the table, and the retry finishes', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.resize(ctx, 'v', 2 * GiB), async (fd) => {
      const rec = await fd.store.getDevice('v');
      const table = fd.dm.sizeOf('/dev/mapper/dm-v') ?? 0;
      assert.ok(table >= rec!.sizeBytes, `table ${table} is shorter than the record ${rec!.sizeBytes}`);
      await fd.driver.devices.resize(ctx, 'v', 2 * GiB); // the CO's retry
      assert.equal(fd.dm.sizeOf('/dev/mapper/dm-v'), 2 * GiB);
      assert.equal((await fd.store.getDevice('v'))?.sizeBytes, 2 * GiB);
    });
  });

  it('activate: every crash point converges', async () => {
    await crashEverywhere(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
    }, (fd) => fd.driver.devices.activate(ctx, 'v'));
  });
});


describe('a crash inside reconcile', () => {
  it('after a crashed create, converges on the next start', async () => {
    await crashTwice(async () => undefined, (fd) => fd.driver.devices.create(ctx, spec('v')));
  });
  it('after a crashed snapshot of an active origin, converges on the next start', async () => {
    await crashTwice(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })));
  });
  it('after a crashed delete, converges on the next start', async () => {
    await crashTwice(async (fd) => {
      await fd.driver.devices.create(ctx, spec('v'));
      await fd.driver.devices.activate(ctx, 'v');
    }, (fd) => fd.driver.devices.remove(ctx, 'v'));
  });
});

describe('a CO retry after a crash and restart', () => {
  const createReq = (name: string, source?: string) => createVolumeReq({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: GiB, limit_bytes: 0 }, volume_content_source: source ? { snapshot: { snapshot_id: source } } : null });
  const stageIn = (fd: FakeDriver, vol: string) => stageReq({ volume_id: vol, staging_target_path: `${fd.dir}/stage`, volume_capability: mountCap() });
  const volId = async (fd: FakeDriver, name: string) => (await fd.driver.controller.CreateVolume(ctx, createReq(name))).volume!.volume_id!;

  async function retryAfterCrash(setup: (fd: FakeDriver) => Promise<void>, rpc: (fd: FakeDriver) => Promise<unknown>, check: (fd: FakeDriver) => Promise<void>) {
    for (let at = 1; at < 100; at++) {
      const fd = await fakeDriver();
      try {
        await setup(fd);
        const sw = crashSwitch(fd);
        sw.arm(at);
        await rpc(fd).catch(() => undefined);
        const crashed = sw.crashed;
        sw.disarm();
        if (crashed) await fd.restart();
        await rpc(fd);
        await rpc(fd);
        assert.deepEqual(await convergence(fd), CONVERGED, `crash at ${at}`);
        await check(fd);
        if (!crashed) return;
      } finally {
        await fd.cleanup();
      }
    }
    assert.fail('the RPC never completed');
  }

  it('CreateVolume', async () => {
    await retryAfterCrash(async () => undefined, (fd) => volId(fd, 'pvc'), async (fd) => {
      assert.equal((await fd.store.listDevices()).length, 1);
    });
  });
  it('CreateSnapshot of a staged volume, then CreateVolume from it', async () => {
    let vol = '';
    await retryAfterCrash(async (fd) => {
      vol = await volId(fd, 'pvc');
      await fd.driver.node.NodeStageVolume(ctx, stageIn(fd, vol));
    }, async (fd) => {
      const s = await fd.driver.controller.CreateSnapshot(ctx, snapshotReq('snap', vol));
      await fd.driver.controller.CreateVolume(ctx, createReq('restored', s.snapshot!.snapshot_id!));
    }, async (fd) => {
      assert.equal((await fd.store.listDevices()).length, 3);
      assert.equal((await fd.dm.info(ctx, `dmthin-${vol}`))?.suspended, false);
      assert.deepEqual(fd.dm.violations, []);
    });
  });
  it('DeleteVolume', async () => {
    let vol = '';
    await retryAfterCrash(async (fd) => { vol = await volId(fd, 'pvc'); }, (fd) => fd.driver.controller.DeleteVolume(ctx, deleteVolumeReq(vol)), async (fd) => {
      assert.deepEqual(await fd.store.listDevices(), []);
    });
  });
  it('NodeStageVolume', async () => {
    let vol = '';
    await retryAfterCrash(async (fd) => { vol = await volId(fd, 'pvc'); }, (fd) => fd.driver.node.NodeStageVolume(ctx, stageIn(fd, vol)), async (fd) => {
      assert.equal(fd.mounter.mounts().filter((m) => m.target === `${fd.dir}/stage`).length, 1);
      assert.equal((await fd.store.getDevice(vol))?.state, 'Activated');
    });
  });
});

describe('reconcile after a reboot', () => {
  let fd: FakeDriver;
  afterEach(() => fd.cleanup());
  it('reactivates Activated devices that are no longer live, at their recorded size', async () => {
    fd = await fakeDriver();
    await fd.driver.devices.create(ctx, spec('v'));
    await fd.driver.devices.create(ctx, spec('w'));
    await fd.driver.devices.activate(ctx, 'v');
    await fd.driver.devices.resize(ctx, 'v', 2 * GiB);
    const d = await fd.reboot();
    assert.deepEqual(d.startup.repaired, [{ id: 'v', from: 'Activated', action: 'reactivated' }]);
    assert.equal(d.startup.tx.verdict, 'in_sync');
    assert.equal(fd.dm.sizeOf('/dev/mapper/dm-v'), 2 * GiB);
    assert.equal((await fd.dm.info(ctx, 'dm-w')), undefined);
    assert.deepEqual(await convergence(fd), CONVERGED);
  });
  it('a live thin device with no record is reported as an orphan and its id is not reused', async () => {
    fd = await fakeDriver();
    await fd.dm.message(ctx, 'test-pool', 'create_thin 0');
    const poolDev = fd.driver.pool.devNo;
    await fd.dm.create(ctx, 'stray', `0 2048 thin ${poolDev} 0`);
    const d = await fd.restart();
    assert.deepEqual(d.startup.orphans, [{ dmName: 'stray', deviceId: 0 }]);
    const rec = await d.devices.create(ctx, spec('v'));
    assert.notEqual(rec.deviceId, 0);
  });
});

describe('a periodic reconcile beside RPCs (exclusive per device)', () => {
  it('skips a device an RPC changed after the records were read, rather than act on a stale view', async () => {
    const fd = await fakeDriver();
    try {
      const { devices } = fd.driver;
      await devices.create(ctx, spec('v'));
      await devices.activate(ctx, 'v');
      await fd.dm.suspend(ctx, 'dm-v'); // left suspended: the pass would resume it
      await devices.create(ctx, spec('w'));
      await fd.store.updateDevice('w', (r) => { r.state = 'Activating'; }); // a crash mid-activation
      await devices.create(ctx, spec('x')); // settled: nothing to do
      await devices.create(ctx, spec('y'));
      await devices.activate(ctx, 'y'); // settled too
      const held: string[] = [];
      // An unstage of v gets the lock first: it deactivates v between the reconcile's reads and its turn.
      const report = await reconcile(ctx, devices, {
        exclusive: async (id, fn) => {
          held.push(id);
          if (id === 'v') await devices.deactivate(ctx, 'v');
          await fn();
          return true;
        },
      });
      assert.deepEqual(held, ['v', 'w'], 'every device with something to repair is reconciled holding its lock, and only those');
      assert.deepEqual(report.faulty, []);
      assert.deepEqual(report.repaired.map((r) => `${r.id}:${r.action}`), ['w:settled']);
      assert.equal((await fd.store.getDevice('v'))?.state, 'Deactivated');
      assert.equal(await fd.dm.info(ctx, 'dm-v'), undefined);
    } finally {
      await fd.cleanup();
    }
  });

  it('leaves a device alone while an RPC holds it', async () => {
    const fd = await fakeDriver();
    try {
      const { devices } = fd.driver;
      await devices.create(ctx, spec('v'));
      await fd.store.updateDevice('v', (r) => { r.state = 'Activating'; }); // an RPC mid-activation
      const report = await reconcile(ctx, devices, { exclusive: async (id, fn) => (id === 'v' ? false : (await fn(), true)) });
      assert.deepEqual(report.repaired, []);
      assert.equal((await fd.store.getDevice('v'))?.state, 'Activating', 'not settled behind the RPC\'s back');
      assert.deepEqual((await reconcile(ctx, devices)).repaired.map((r) => r.action), ['settled'], 'a pass with nobody holding it settles it');
    } finally {
      await fd.cleanup();
    }
  });
});
