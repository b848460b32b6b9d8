// Group snapshots in the pool layer, over the fake kernel: one freeze for the whole group, and
// all or nothing across a crash at every step boundary of create and delete.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GroupControllerService } from '../../../src/controller/groups.ts';
import { groupIdFor, memberIdFor } from '../../../src/volume/ids.ts';
import { createVolumeReq, deleteGroupReq, groupSnapshotReq } from '../../support/requests.ts';
import { CONVERGED, convergence, ctx, fakeDriver, MiB, mountCap, type FakeDriver } from '../support/fake-driver.ts';
import { crashEverywhere, crashTwice } from '../support/crash.ts';

const NAME = 'g1';
const vols: string[] = [];

/** Three volumes, the first two live (activated): their group snapshot suspends two. */
const setup = (fd: FakeDriver) => volumes(fd, [true, true, false]);

async function volumes(fd: FakeDriver, live: boolean[]): Promise<void> {
  vols.length = 0;
  for (const [i, isLive] of live.entries()) {
    const v = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: `v${i}`, volume_capabilities: [mountCap()], capacity_range: { required_bytes: 64 * MiB, limit_bytes: 0 } }))).volume!.volume_id!;
    if (isLive) await fd.driver.devices.activate(ctx, v);
    vols.push(v);
  }
  await fd.driver.pool.settled(); // the setup's stamps land now, not among the operation's steps
}

const gc = (fd: FakeDriver): GroupControllerService => fd.driver.groupController!;
const create = (fd: FakeDriver) => gc(fd).CreateVolumeGroupSnapshot(ctx, groupSnapshotReq(NAME, vols));
const members = () => vols.map((v) => memberIdFor(NAME, v));

/** All or nothing: no group record, or a Ready one whose members all exist as Created snapshots. */
async function assertWholeOrNone(fd: FakeDriver, context: string): Promise<'whole' | 'none'> {
  const groups = await fd.store.listGroups();
  const snaps = (await fd.store.listDevices()).filter((r) => r.kind === 'snapshot');
  if (groups.length === 0) {
    assert.deepEqual(snaps.map((s) => s.id), [], `${context}: no group, so no member`);
    return 'none';
  }
  assert.equal(groups[0]!.state, 'Ready', `${context}: a group that survives a restart is Ready`);
  assert.deepEqual(snaps.map((s) => `${s.id}:${s.state}`).sort(), members().map((m) => `${m}:Created`).sort(), `${context}: every member Created`);
  return 'whole';
}

async function originsResumed(fd: FakeDriver): Promise<void> {
  for (const v of vols.slice(0, 2)) {
    assert.equal((await fd.store.getDevice(v))?.state, 'Activated');
    assert.equal((await fd.dm.info(ctx, `dmthin-${v}`))?.suspended, false);
  }
}

describe('group snapshot in one freeze', () => {
  it('suspends every live member before the first create_snap and resumes them after the last, one window observed', async () => {
    const fd = await fakeDriver();
    try {
      await setup(fd);
      const events: string[] = [];
      const dm = fd.dm as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      for (const op of ['suspend', 'resume', 'message']) {
        const orig = dm[op]!.bind(fd.dm);
        dm[op] = async (...a: unknown[]) => { const r = await orig(...a); events.push(`${op} ${String(a[op === 'message' ? 2 : 1]).split(' ')[0]}`); return r; };
      }
      const res = await create(fd);
      const kinds = events.filter((e) => !e.includes('set_transaction_id')).map((e) => e.split(' ').slice(0, 2).join(' '));
      assert.deepEqual(kinds, ['suspend dmthin-' + [...vols.slice(0, 2)].sort()[0], 'suspend dmthin-' + [...vols.slice(0, 2)].sort()[1],
        'message create_snap', 'message create_snap', 'message create_snap',
        'resume dmthin-' + [...vols.slice(0, 2)].sort()[0], 'resume dmthin-' + [...vols.slice(0, 2)].sort()[1]]);
      assert.deepEqual(fd.dm.violations, []);
      assert.equal(res.group_snapshot!.ready_to_use, true);
      assert.equal(res.group_snapshot!.group_snapshot_id, groupIdFor(NAME));
      assert.deepEqual(res.group_snapshot!.snapshots!.map((s) => s.source_volume_id), vols);
      const h = await fd.driver.metrics.registry.getSingleMetric('dmthin_csi_group_snapshot_suspend_seconds')!.get();
      assert.equal(h.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))?.value, 1, 'one observation for the whole group');
      await originsResumed(fd);
    } finally {
      await fd.cleanup();
    }
  });
});

describe('group snapshot crash at every step boundary', () => {
  it('create: every crash converges to the whole group or none of it, origins resumed; the retry makes it whole', async () => {
    const seen = new Set<string>();
    await crashEverywhere(setup, create, async (fd) => {
      seen.add(await assertWholeOrNone(fd, 'after restart'));
      await originsResumed(fd);
      await create(fd);
      assert.equal(await assertWholeOrNone(fd, 'after the retry'), 'whole');
      assert.deepEqual(await convergence(fd), CONVERGED);
    });
    assert.deepEqual([...seen].sort(), ['none', 'whole'], 'crashes landed both before and after the group was Ready');
  });

  it('delete: every crash converges to the whole group or none of it; the retry deletes it all', async () => {
    const del = (fd: FakeDriver) => gc(fd).DeleteVolumeGroupSnapshot(ctx, deleteGroupReq(groupIdFor(NAME), members()));
    await crashEverywhere(async (fd) => { await setup(fd); await create(fd); await fd.driver.pool.settled(); }, del, async (fd) => {
      assert.equal(await assertWholeOrNone(fd, 'after restart'), 'none', 'a delete that began is finished by the restart');
      await del(fd);
      assert.deepEqual(await fd.store.listGroups(), []);
      assert.deepEqual(await convergence(fd), CONVERGED);
    });
  });

  it('a crash inside the restart\'s repair of a crashed group create converges on the next start', async () => {
    await crashTwice((fd) => volumes(fd, [true, false]), create); // two members: the square of the steps stays small
  });
});
