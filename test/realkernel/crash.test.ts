/**
 * kill -9 of the driver in the middle of create, snapshot (origin suspended), restore,
 * expand and delete, then a restart: every run must converge with no device left
 * half-made, no leaked thin id, no suspended origin, and fsynced data intact. The group
 * snapshot is killed at every step boundary instead (src/system/crashpoint.ts): after each
 * kill the group exists whole or not at all.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { codeOf, GiB, MiB, mountCap } from '../support/csi-client.ts';
import { groupIdFor, memberIdFor } from '../../src/volume/ids.ts';
import { KUBELET, groupRecords, liveThins, assertTxSettled, poolThinIds, records, repairsAtStart, startDriver, STATE, stopDriver, warmRestarts, type DriverProcess } from './harness.ts';
import { sleep } from '../../src/system/delay.ts';

const TRANSITIONAL = new Set(['Unknown', 'Creating', 'Activating', 'Suspending', 'Suspended', 'Resuming', 'Deactivating', 'Removing', 'Removed']);
// Where in the round's batch the kill is aimed: after this delay, at the next moment the store
// shows an operation halfway (untilMidOperation).
const DELAYS_MS = [25, 50, 80, 120, 160, 250];

let d: DriverProcess;
const staging = (v: string) => `${KUBELET}/crash-staging/${v}`;
const target = (v: string) => `${KUBELET}/crash-pods/${v}`;

/** A separate process appending fsynced lines, so a suspended origin blocks it and not this test. */
function startWriter(file: string): { durable: () => number; stop: () => Promise<void> } {
  const code = `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},'a');let i=${lineCount(file)};
    for(;;){i++;fs.writeSync(fd,'line '+i+' '+'y'.repeat(100)+'\\n');fs.fsyncSync(fd);process.stdout.write(i+'\\n');}`;
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let durable = lineCount(file);
  child.stdout!.on('data', (b: Buffer) => {
    const last = b.toString().trim().split('\n').pop();
    if (last) durable = Number(last);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { durable: () => durable, stop: async () => { child.kill('SIGKILL'); await exited; } };
}

function lineCount(file: string): number {
  let text = '';
  try { text = readFileSync(file, 'utf8'); } catch { return 0; }
  const all = text.split('\n').filter(Boolean);
  all.forEach((l, i) => assert.ok(l.startsWith(`line ${i + 1} `), `line ${i + 1} intact`));
  return all.length;
}

/** The CO's requests for round i: they are retried after the crash until they succeed. */
function batch(i: number, base: string) {
  const C = () => d.clients.controller;
  const cap = mountCap();
  return [
    () => C().call('CreateVolume', { name: `crash-new-${i}`, capacity_range: { required_bytes: 128 * MiB }, volume_capabilities: [cap] }),
    () => C().call('CreateSnapshot', { name: `crash-snap-${i}`, source_volume_id: base }),
    () => C().call('ControllerExpandVolume', { volume_id: base, capacity_range: { required_bytes: GiB + i * 64 * MiB } }),
    ...(i > 0 ? [
      async () => {
        const s = await C().call('CreateSnapshot', { name: `crash-snap-${i - 1}`, source_volume_id: base });
        return C().call('CreateVolume', { name: `crash-restore-${i}`, volume_capabilities: [cap], volume_content_source: { snapshot: { snapshot_id: s.snapshot.snapshot_id } } });
      },
      async () => {
        const v = await C().call('CreateVolume', { name: `crash-new-${i - 1}`, capacity_range: { required_bytes: 128 * MiB }, volume_capabilities: [cap] });
        return C().call('DeleteVolume', { volume_id: v.volume.volume_id });
      },
    ] : []),
  ];
}

/**
 * Past the round's delay, the kill waits (up to 2 s) for the store to show an operation between
 * its intent and its confirmation: a timer alone lands between operations once they take tens of
 * milliseconds, and then the restart has nothing to repair and the round proves nothing.
 */
async function untilMidOperation(): Promise<void> {
  for (const until = Date.now() + 2_000; Date.now() < until; await sleep(2)) {
    try {
      if (records().some((r) => TRANSITIONAL.has(r.state))) return;
    } catch {
      // a record replaced while it was read: look again
    }
  }
}

function assertConverged(context: string) {
  const recs = records();
  const stuck = recs.filter((r) => TRANSITIONAL.has(r.state) || r.state === 'Faulty');
  assert.deepEqual(stuck.map((r) => `${r.id}:${r.state}:${r.error ?? ''}`), [], `${context}: no record stuck or Faulty`);
  assert.deepEqual(liveThins().filter((t) => t.suspended), [], `${context}: nothing left suspended`);
  assert.deepEqual(poolThinIds().sort((a, b) => a - b), recs.map((r) => r.deviceId).sort((a, b) => a - b), `${context}: pool thin ids == recorded ids`);
  assertTxSettled(context);
}

// Every kill is followed by a start: the next driver's code loads while the last one runs.
const warm = warmRestarts();
after(() => warm.stop());

describe('SIGKILL mid-operation, then restart', { timeout: 1_800_000 }, () => {
  let base = '';
  let repairs = 0;

  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
    d = await startDriver();
    const v = await d.clients.controller.call('CreateVolume', { name: 'crash-base', capacity_range: { required_bytes: GiB }, volume_capabilities: [mountCap()] });
    base = v.volume.volume_id;
    await d.clients.node.call('NodeStageVolume', { volume_id: base, staging_target_path: staging(base), volume_capability: mountCap() });
    await d.clients.node.call('NodePublishVolume', { volume_id: base, staging_target_path: staging(base), target_path: target(base), volume_capability: mountCap(), readonly: false });
  });

  after(async () => { if (d) await stopDriver(d); });

  for (const [i, delay] of DELAYS_MS.entries()) {
    it(`round ${i}: kill after ${delay} ms converges`, async () => {
      const writer = startWriter(`${target(base)}/log.txt`);
      await sleep(300);
      const ops = batch(i, base);
      const inflight = ops.map((op) => op().catch(() => undefined));
      await sleep(delay);
      await untilMidOperation();
      d.child.kill('SIGKILL');
      await d.exited;
      const durableAtKill = writer.durable();
      d.clients.close();
      await Promise.all(inflight);
      d = await startDriver();
      repairs += repairsAtStart(d.log);
      assertConverged(`after kill in round ${i}`);
      await writer.stop();
      assert.ok(lineCount(`${target(base)}/log.txt`) >= durableAtKill, 'every line fsynced before the kill is intact');
      for (const op of ops) await op(); // the CO retries until each request succeeds
      assertConverged(`after retries in round ${i}`);
      assert.equal(await codeOf(d.clients.controller.call('CreateSnapshot', { name: `crash-snap-${i}`, source_volume_id: 'vol-00000000000000000000000000000000' })), 'ALREADY_EXISTS');
    });
  }

  it('killed at least one operation halfway (else this suite proves nothing)', () => {
    assert.ok(repairs > 0, 'no restart found anything to repair: the kills all landed between operations');
  });

  it('cleans up completely', async () => {
    await d.clients.node.call('NodeUnpublishVolume', { volume_id: base, target_path: target(base) });
    await d.clients.node.call('NodeUnstageVolume', { volume_id: base, staging_target_path: staging(base) });
    for (const r of records()) {
      if (r.kind === 'volume') await d.clients.controller.call('DeleteVolume', { volume_id: r.id });
      else await d.clients.controller.call('DeleteSnapshot', { snapshot_id: r.id });
    }
    assert.deepEqual(records(), []);
    assert.deepEqual(poolThinIds(), []);
    assertConverged('at the end');
  });
});

/** The group exists whole (Ready, every member a Created snapshot) or not at all (no member either). */
function groupState(name: string, sources: string[]): 'whole' | 'none' {
  const group = groupRecords().find((g) => g.id === groupIdFor(name));
  const members = sources.map((s) => records().find((r) => r.id === memberIdFor(name, s)));
  if (!group) {
    assert.deepEqual(members.filter(Boolean).map((m) => m!.id), [], `${name}: no group, so no member`);
    return 'none';
  }
  assert.equal(group.state, 'Ready', `${name}: a group that survives a restart is Ready`);
  assert.deepEqual(members.map((m) => m?.state), sources.map(() => 'Created'), `${name}: every member Created`);
  return 'whole';
}

describe('group snapshot: SIGKILL at every step boundary, then restart', { timeout: 1_800_000 }, () => {
  const pair: string[] = [];
  const G = () => d.clients.group;
  const armed = (n: number) => ({ DMTHIN_CRASH_SCOPE: `group/${groupIdFor(`cg-${n}`)}`, DMTHIN_CRASH_AFTER_STEPS: String(n) });
  const log = () => `${target(pair[0]!)}/group-log.txt`;

  before(async () => {
    d = await startDriver();
    for (const i of [0, 1]) {
      const v = (await d.clients.controller.call('CreateVolume', { name: `crash-g-${i}`, capacity_range: { required_bytes: 256 * MiB }, volume_capabilities: [mountCap()] })).volume.volume_id as string;
      await d.clients.node.call('NodeStageVolume', { volume_id: v, staging_target_path: staging(v), volume_capability: mountCap() });
      await d.clients.node.call('NodePublishVolume', { volume_id: v, staging_target_path: staging(v), target_path: target(v), volume_capability: mountCap(), readonly: false });
      pair.push(v);
    }
    await stopDriver(d);
  });

  after(async () => { if (d) await stopDriver(d); });

  it('converges to the whole group or none of it after a kill at each step, and the retry makes it whole', async () => {
    const seen = new Set<string>();
    let boundaries = 0;
    d = await startDriver([], armed(1));
    for (let n = 1; ; n++) {
      assert.ok(n <= 60, 'still crashing after 60 steps');
      const writer = startWriter(log());
      await sleep(200);
      const outcome = G().call('CreateVolumeGroupSnapshot', { name: `cg-${n}`, source_volume_ids: pair }).then(() => 'done' as const, (e: unknown) => e);
      const first = await Promise.race([outcome, d.exited.then(() => 'killed' as const)]);
      if (first === 'done') await sleep(2000); // the stamp follows the reply: its steps too
      const durableAtKill = writer.durable();
      if (first === 'done' && d.child.exitCode === null && d.child.signalCode === null) {
        await writer.stop();
        boundaries = n - 1;
        break;
      }
      d.clients.close();
      await outcome;
      d = await startDriver([], armed(n + 1));
      await writer.stop(); // after the restart: a writer blocked on a member left frozen dies only once it thaws
      assertConverged(`group killed after step ${n}`);
      seen.add(groupState(`cg-${n}`, pair));
      assert.ok(lineCount(log()) >= durableAtKill, 'every line fsynced before the kill is intact');
      await G().call('CreateVolumeGroupSnapshot', { name: `cg-${n}`, source_volume_ids: pair });
      assert.equal(groupState(`cg-${n}`, pair), 'whole', `cg-${n}: the retry made it whole`);
      assertConverged(`group killed after step ${n}, retried`);
    }
    console.log(`group snapshot: killed at ${boundaries} step boundaries; after the restart: ${[...seen].join(', ')}`);
    assert.ok(boundaries >= 8, `only ${boundaries} step boundaries`);
    assert.deepEqual([...seen].sort(), ['none', 'whole'], 'kills landed both before and after the group was Ready');
  });

  it('cleans up completely', async () => {
    for (const g of groupRecords()) await G().call('DeleteVolumeGroupSnapshot', { group_snapshot_id: g.id, snapshot_ids: g.members.map((m) => m.snapshotId) });
    for (const v of pair) {
      await d.clients.node.call('NodeUnpublishVolume', { volume_id: v, target_path: target(v) });
      await d.clients.node.call('NodeUnstageVolume', { volume_id: v, staging_target_path: staging(v) });
      await d.clients.controller.call('DeleteVolume', { volume_id: v });
    }
    assert.deepEqual(records(), []);
    assert.deepEqual(poolThinIds(), []);
    assertConverged('at the end');
  });
});
