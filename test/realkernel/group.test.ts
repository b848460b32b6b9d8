/**
 * Group snapshots on a real pool: one instant across volumes that a writer fills in program
 * order. The writer appends record n to volume 0 (fsync), then record n to volume 1 (fsync), ...,
 * so in any one instant volume i+1's last record is at most volume i's, and the first is at
 * most one ahead of the last. A group snapshot taken mid-stream, restored and mounted, must show
 * exactly that, with every file intact. The same check on two single snapshots taken one after
 * the other (what a driver without the shared freeze does) must find the order broken: that is
 * what shows the check can fail. It proves the cut was consistent in these runs, not in every
 * possible interleaving.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../../src/system/delay.ts';
import { codeOf, MiB, mountCap } from '../support/csi-client.ts';
import { KUBELET, liveThins, poolThinIds, records, startDriver, STATE, stopDriver, type DriverProcess } from './harness.ts';

let d: DriverProcess;
const C = () => d.clients.controller;
const N = () => d.clients.node;
const G = () => d.clients.group;
const staging = (v: string) => `${KUBELET}/staging/${v}`;
const target = (v: string) => `${KUBELET}/pods/${v}`;
const RECORD_PAD = 'z'.repeat(200);

async function mounted(name: string, source?: string): Promise<string> {
  const r = await C().call('CreateVolume', { name, capacity_range: { required_bytes: 128 * MiB }, volume_capabilities: [mountCap()], volume_content_source: source ? { snapshot: { snapshot_id: source } } : null });
  const id = r.volume.volume_id as string;
  await N().call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: mountCap() });
  await N().call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: mountCap(), readonly: false });
  return id;
}

async function unmountAndDelete(id: string): Promise<void> {
  await N().call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
  await N().call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
  await C().call('DeleteVolume', { volume_id: id });
}

/** A separate process (a suspended volume blocks it, not this test) writing record n to each file in turn, each fsynced. */
function startWriter(files: string[]): { records: () => number; stop: () => Promise<void> } {
  const code = `const fs=require('fs');const fds=${JSON.stringify(files)}.map((f)=>fs.openSync(f,'a'));
    for(let n=1;;n++){for(const fd of fds){fs.writeSync(fd,'record '+n+' ${RECORD_PAD}\\n');fs.fsyncSync(fd);}process.stdout.write(n+'\\n');}`;
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let done = 0;
  child.stdout!.on('data', (b: Buffer) => { done = Number(b.toString().trim().split('\n').pop()); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { records: () => done, stop: async () => { child.kill('SIGKILL'); await exited; } };
}

/** The last record of a restored file; every line must be whole and in sequence (no torn or missing record). */
function lastRecord(file: string): number {
  const lines = readFileSync(file, 'utf8').split('\n');
  const tail = lines.pop();
  assert.equal(tail, '', `${file}: ends with a whole line`);
  lines.forEach((l, i) => assert.equal(l, `record ${i + 1} ${RECORD_PAD}`, `${file}: record ${i + 1} intact`));
  return lines.length;
}

/** Restores each snapshot, mounts it, reads each volume's last record, and removes the restores. */
async function restoredLasts(tag: string, snapshotIds: string[]): Promise<number[]> {
  const lasts: number[] = [];
  for (const [i, s] of snapshotIds.entries()) {
    const r = await mounted(`${tag}-restore-${i}`, s);
    lasts.push(lastRecord(`${target(r)}/${tag}.log`));
    await unmountAndDelete(r);
  }
  return lasts;
}

/** Program order holds: each volume's last record <= the one before it, and the first at most one ahead of the last. */
function ordered(lasts: number[]): boolean {
  return lasts.every((n, i) => i === 0 || n <= lasts[i - 1]!) && lasts[0]! - lasts.at(-1)! <= 1;
}

/** Volumes mounted and written in program order; `cut` takes the snapshots mid-stream; returns the restored last records. */
async function underWrite(tag: string, vols: string[], cut: () => Promise<string[]>): Promise<{ lasts: number[]; written: number }> {
  const writer = startWriter(vols.map((v) => `${target(v)}/${tag}.log`)); // a file of its own per run
  try {
    while (writer.records() < 20) await sleep(50);
    const snaps = await cut();
    const atCut = writer.records();
    while (writer.records() < atCut + 5) await sleep(50); // the writer went on after the cut
    await writer.stop();
    const lasts = await restoredLasts(tag, snaps);
    return { lasts, written: writer.records() };
  } finally {
    await writer.stop();
  }
}

function groupCut(name: string, vols: string[]): () => Promise<string[]> {
  return async () => {
    const r = await G().call('CreateVolumeGroupSnapshot', { name, source_volume_ids: vols, secrets: { ignored: 'yes' } });
    assert.equal(r.group_snapshot.ready_to_use, true);
    return (r.group_snapshot.snapshots as Array<{ snapshot_id: string; source_volume_id: string }>)
      .sort((a, b) => vols.indexOf(a.source_volume_id) - vols.indexOf(b.source_volume_id)).map((s) => s.snapshot_id);
  };
}

describe('group snapshots on a real pool', { timeout: 1_800_000 }, () => {
  const vols: string[] = [];

  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
    d = await startDriver();
    for (let i = 0; i < 8; i++) vols.push(await mounted(`gv-${i}`));
  });

  after(async () => { if (d) await stopDriver(d); });

  it('advertises the GroupController', async () => {
    const caps = await d.clients.identity.call('GetPluginCapabilities', {});
    assert.ok(caps.capabilities.some((c: { service?: { type: string } }) => c.service?.type === 'GROUP_CONTROLLER_SERVICE'));
    const g = await G().call('GroupControllerGetCapabilities', {});
    assert.deepEqual(g.capabilities.map((c: { rpc: { type: string } }) => c.rpc.type), ['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT']);
  });

  for (const n of [2, 8]) {
    it(`a group of ${n} volumes under write is one instant: restored, each volume's last record <= the one before it`, async () => {
      const members = vols.slice(0, n);
      const { lasts } = await underWrite(`g${n}`, members, groupCut(`group-${n}`, members));
      assert.ok(lasts[0]! >= 20, `the cut was mid-stream (${lasts.join(',')})`);
      assert.ok(ordered(lasts), `program order kept in the group snapshot: last records ${lasts.join(', ')}`);
    });
  }

  it('the same check finds the order broken in snapshots taken one after another without the shared freeze', async () => {
    const pair = vols.slice(0, 2);
    let broken = 0;
    const seen: string[] = [];
    for (let attempt = 0; attempt < 3 && broken === 0; attempt++) {
      const { lasts } = await underWrite(`seq${attempt}`, pair, async () => {
        const ids: string[] = [];
        for (const [i, v] of pair.entries()) ids.push((await C().call('CreateSnapshot', { name: `seq-${attempt}-${i}`, source_volume_id: v })).snapshot.snapshot_id);
        return ids;
      });
      seen.push(lasts.join('/'));
      if (!ordered(lasts)) broken++;
    }
    assert.ok(broken > 0, `sequential snapshots kept program order every time (${seen.join('; ')}): the check cannot tell them apart`);
  });

  it('answers the spec error tables', async () => {
    const pair = vols.slice(0, 2);
    const first = (await G().call('CreateVolumeGroupSnapshot', { name: 'group-2', source_volume_ids: [...pair].reverse(), secrets: { other: 'x' } })).group_snapshot;
    assert.equal(first.snapshots.length, 2, 'the same name with the same sources (in any order) is the same group');
    assert.equal(await codeOf(G().call('CreateVolumeGroupSnapshot', { name: 'group-2', source_volume_ids: vols.slice(0, 3) })), 'ALREADY_EXISTS');
    assert.equal(await codeOf(G().call('CreateVolumeGroupSnapshot', { name: 'group-x', source_volume_ids: [pair[0], 'vol-00000000000000000000000000000000'] })), 'NOT_FOUND');
    assert.equal(await codeOf(G().call('CreateVolumeGroupSnapshot', { name: 'group-y', source_volume_ids: [] })), 'INVALID_ARGUMENT');
    const ids = first.snapshots.map((s: { snapshot_id: string }) => s.snapshot_id);
    const got = await G().call('GetVolumeGroupSnapshot', { group_snapshot_id: first.group_snapshot_id, snapshot_ids: ids });
    assert.equal(got.group_snapshot.ready_to_use, true);
    assert.equal(await codeOf(G().call('GetVolumeGroupSnapshot', { group_snapshot_id: first.group_snapshot_id, snapshot_ids: [ids[0]] })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(G().call('GetVolumeGroupSnapshot', { group_snapshot_id: 'group-00000000000000000000000000000000', snapshot_ids: ids })), 'NOT_FOUND');
    // Members are ordinary snapshots, deleted only with their group.
    const listed = await C().call('ListSnapshots', { snapshot_id: ids[0] });
    assert.equal(listed.entries[0].snapshot.group_snapshot_id, first.group_snapshot_id);
    assert.equal(await codeOf(C().call('DeleteSnapshot', { snapshot_id: ids[0] })), 'INVALID_ARGUMENT');
    await G().call('DeleteVolumeGroupSnapshot', { group_snapshot_id: first.group_snapshot_id, snapshot_ids: ids });
    await G().call('DeleteVolumeGroupSnapshot', { group_snapshot_id: first.group_snapshot_id, snapshot_ids: ids });
    assert.equal((await C().call('ListSnapshots', { snapshot_id: ids[0] })).entries.length, 0);
  });

  it('cleans up completely, nothing left suspended', async () => {
    assert.deepEqual(liveThins().filter((t) => t.suspended), []);
    for (const r of records().filter((x) => x.kind === 'snapshot')) {
      const group = r.meta['group.id'];
      if (group) {
        const ids = records().filter((x) => x.meta['group.id'] === group).map((x) => x.id);
        if (ids.length) await G().call('DeleteVolumeGroupSnapshot', { group_snapshot_id: group, snapshot_ids: ids });
      } else {
        await C().call('DeleteSnapshot', { snapshot_id: r.id });
      }
    }
    for (const v of vols) await unmountAndDelete(v);
    assert.deepEqual(records(), []);
    assert.deepEqual(poolThinIds(), []);
  });
});
