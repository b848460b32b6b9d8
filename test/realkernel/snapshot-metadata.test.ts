/**
 * Changed-block tracking on a real dm-thin pool, through the standalone driver's CSI socket:
 * known patterns written into raw block volumes, snapshots, overwrites, discards and a grow,
 * and every answer of the SnapshotMetadata service proven by reconstruction (reconstruct.ts)
 * from restores of the snapshots. The same writes at 1 GiB and 16 GiB; a restart over a hold
 * a crash left; many snapshots; resumed calls with max_results small.
 */
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../src/system/delay.ts';
import { after, before, describe, it } from 'node:test';
import { blockCap, GiB, MiB } from '../support/csi-client.ts';
import { MetadataClient, rangesOf, readResumed, type Range } from '../support/metadata-client.ts';
import { ENDPOINT, KUBELET, POOL, sh, startDriver, STATE, stopDriver, tail, type DriverProcess } from './harness.ts';
import { reconstructAllocated, reconstructDelta, sampled, type Window } from './reconstruct.ts';

let d: DriverProcess;
let md: MetadataClient;
const C = () => d.clients.controller;
const N = () => d.clients.node;
const staging = (v: string) => `${KUBELET}/staging/${v}`;
const target = (v: string) => `${KUBELET}/pods/${v}/dev`;
const BLOCK = 64 * 1024;
/** What the suite reports: false "changed" and the like, per scenario, printed at the end. */
const report: Record<string, unknown> = {};

async function blockVolume(name: string, size: number, snapshotId?: string): Promise<{ id: string; path: string }> {
  const r = await C().call('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [blockCap()], volume_content_source: snapshotId ? { snapshot: { snapshot_id: snapshotId } } : null });
  const id = r.volume.volume_id as string;
  await N().call('NodeStageVolume', { volume_id: id, staging_target_path: staging(id), volume_capability: blockCap() });
  await N().call('NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: target(id), volume_capability: blockCap(), readonly: false });
  return { id, path: target(id) };
}

async function unpublish(id: string): Promise<void> {
  await N().call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
  await N().call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
}

async function snapshot(name: string, volumeId: string): Promise<string> {
  return (await C().call('CreateSnapshot', { name, source_volume_id: volumeId })).snapshot.snapshot_id as string;
}

/** Bytes that say where they are and which generation wrote them: any misplaced copy shows. */
function pattern(gen: number, offset: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i += 8) {
    b.writeUInt32LE(((offset + i) / 8) >>> 0, i);
    b.writeUInt32LE((gen * 0x9e3779b1) >>> 0, i + 4);
  }
  return b;
}

/** Writes and their windows: everything the suite changed, so a 16 GiB volume is compared where it matters. */
class Writer {
  readonly touched: Window[] = [];
  private readonly path: string;
  constructor(path: string) { this.path = path; }
  write(gen: number, offset: number, len: number): void {
    const fd = openSync(this.path, 'r+');
    try {
      writeSync(fd, pattern(gen, offset, len), 0, len, offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.touched.push({ start: offset, end: offset + len });
  }
  /** The same bytes again: new data blocks with the old content (a false "changed" the service may report). */
  rewrite(gen: number, offset: number, len: number): void { this.write(gen, offset, len); }
  discard(offset: number, len: number): void {
    sh('blkdiscard', ['-o', String(offset), '-l', String(len), this.path]);
    this.touched.push({ start: offset, end: offset + len });
  }
  /** The touched windows, widened to whole pool blocks (a partial write provisions its block). */
  windows(): Window[] { return this.touched.map((w) => ({ start: Math.floor(w.start / BLOCK) * BLOCK, end: Math.ceil(w.end / BLOCK) * BLOCK })); }
}

/** The first generation's writes: runs within and across pool blocks, unaligned ones, one long run. */
function firstWrites(w: Writer): void {
  for (let i = 0; i < 24; i++) w.write(1, i * 37 * MiB + (i % 5) * 4096, 4096 * (1 + (i % 7) * 9));
  w.write(1, 300 * MiB, 8 * MiB);
  w.write(1, 600 * MiB + 12_345 - 12_345 % 512, 3 * BLOCK);
}

/** The second: overwrites in and across old runs, a rewrite of the same bytes, discards (whole and partial blocks), new runs. */
function secondWrites(w: Writer): void {
  w.write(2, 37 * MiB, 4096);
  w.write(2, 300 * MiB + 2 * MiB + 512, 3 * MiB);
  w.rewrite(1, 300 * MiB + 6 * MiB, BLOCK);
  w.discard(300 * MiB, MiB);
  w.discard(3 * 37 * MiB, 4096 * 64 + 4096); // one whole block and a part of the next
  w.write(2, 900 * MiB, 2 * MiB);
}

const deltaOf = (base: string, tgt: string, max = 0) => md.delta({ base_snapshot_id: base, target_snapshot_id: tgt, max_results: max });

function assertProof(name: string, delta: ReturnType<typeof reconstructDelta>): void {
  assert.equal(delta.missingBytes, 0, `${name}: no changed byte missing (first at ${delta.firstMissing})`);
  report[name] = { comparedMiB: +(delta.compared / MiB).toFixed(1), reportedMiB: +(delta.reportedBytes / MiB).toFixed(2), falseChangedMiB: +(delta.falseChangedBytes / MiB).toFixed(2) };
}

/**
 * One volume through the cycle: write, snapshot, change and grow, snapshot; then the delta and
 * both allocations proven from restores at the target's size.
 */
async function cycle(tag: string, size: number): Promise<{ s1: string; s2: string; ranges: Range[] }> {
  const v = await blockVolume(`${tag}-v`, size);
  const w = new Writer(v.path);
  firstWrites(w);
  const s1 = await snapshot(`${tag}-s1`, v.id);
  secondWrites(w);
  const grown = size + 64 * MiB;
  await C().call('ControllerExpandVolume', { volume_id: v.id, capacity_range: { required_bytes: grown }, volume_capability: blockCap() });
  await N().call('NodeExpandVolume', { volume_id: v.id, volume_path: v.path, staging_target_path: staging(v.id), capacity_range: { required_bytes: grown }, volume_capability: blockCap() });
  w.write(2, size + 10 * MiB, 5 * BLOCK); // inside the grown part
  const s2 = await snapshot(`${tag}-s2`, v.id);
  await unpublish(v.id);

  const full = await deltaOf(s1, s2);
  assert.equal(full.code, 'OK', full.details);
  assert.ok(full.responses.every((r) => Number(r.volume_capacity_bytes) === grown && r.block_metadata_type === 'VARIABLE_LENGTH'));
  const ranges = rangesOf(full);
  const r1 = await blockVolume(`${tag}-r1`, grown, s1);
  const r2 = await blockVolume(`${tag}-r2`, grown, s2);
  // Every byte the suite touched, and 32 windows of 1 MiB spread over the rest (never written:
  // zeros in both). A whole 1 GiB read costs 25 s in the emulated guest, per device.
  const windows = [...w.windows(), ...sampled(grown, Math.ceil(grown / 32 / MiB) * MiB, MiB)];
  assertProof(`${tag} delta`, reconstructDelta(r1.path, r2.path, ranges, grown, windows));
  for (const [snap, restore, cap] of [[s1, r1, size], [s2, r2, grown]] as const) {
    const a = await md.allocated({ snapshot_id: snap });
    assert.equal(a.code, 'OK', a.details);
    const check = reconstructAllocated(restore.path, rangesOf(a), cap, windows);
    assert.equal(check.missingBytes, 0, `${tag} allocated ${snap}: zeros + ranges are the snapshot (first lost byte at ${check.firstMissing})`);
  }
  await unpublish(r1.id);
  await unpublish(r2.id);
  return { s1, s2, ranges };
}

// The 16 GiB volume is written in a few MiB: an overprovisioned pool, as thin pools are used. At
// ratio 1 it is refused whenever the guest's filesystem has less than 16 GiB free under the pool.
const OVERPROVISION = ['--overprovision-ratio', '8'];

describe('SnapshotMetadata on a real dm-thin pool', { timeout: 900_000 }, () => {
  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
    d = await startDriver(OVERPROVISION);
    md = new MetadataClient(ENDPOINT);
  });
  after(async () => {
    md?.close();
    if (d) {
      const code = await stopDriver(d);
      if (code !== 0) console.log(tail(d.log));
    }
    console.log(`snapshot-metadata report: ${JSON.stringify(report)}`);
  });

  let small: Awaited<ReturnType<typeof cycle>>;
  let big: Awaited<ReturnType<typeof cycle>>;

  it('advertises the service', async () => {
    const caps = await d.clients.identity.call('GetPluginCapabilities');
    assert.ok(caps.capabilities.some((c: any) => c.service?.type === 'SNAPSHOT_METADATA_SERVICE'));
  });

  it('1 GiB: base + delta rebuilds the target, zeros + allocated rebuild each snapshot', async () => {
    small = await cycle('g1', GiB);
  });

  it('16 GiB, the same writes: the same ranges, proven the same way', async () => {
    big = await cycle('g16', 16 * GiB);
    // The grown part starts at each one's old size; below it the writes were the same.
    const rel = (rs: Range[], size: number) => rs.map((r) => [Number(r.byte_offset) >= size ? `+${Number(r.byte_offset) - size}` : Number(r.byte_offset), Number(r.size_bytes)]);
    assert.deepEqual(rel(big.ranges, 16 * GiB), rel(small.ranges, GiB), 'the volume\'s size changes nothing the writes did not');
  });

  it('a resumed read (max_results 2, cancelled after every 3 responses) continues exactly where it stopped', async () => {
    const { ranges, calls } = await readResumed((from) => md.delta({ base_snapshot_id: small.s1, target_snapshot_id: small.s2, starting_offset: from, max_results: 2 }, { cancelAfter: 3 }));
    assert.deepEqual(ranges.map((r) => [Number(r.byte_offset), Number(r.size_bytes)]), small.ranges.map((r) => [Number(r.byte_offset), Number(r.size_bytes)]));
    assert.ok(calls > 1, `it took ${calls} calls`);
    const paged = await deltaOf(small.s1, small.s2, 2);
    assert.ok(paged.responses.every((r) => r.block_metadata.length <= 2));
  });

  it('answers the spec\'s codes', async () => {
    const code = async (p: Promise<{ code: string }>) => (await p).code;
    assert.equal(await code(md.allocated({ snapshot_id: 'snap-00000000000000000000000000000000' })), 'NOT_FOUND');
    assert.equal(await code(md.allocated({ snapshot_id: '' })), 'INVALID_ARGUMENT');
    assert.equal(await code(md.allocated({ snapshot_id: small.s1, starting_offset: 2 * GiB })), 'OUT_OF_RANGE');
    assert.equal(await code(deltaOf(small.s1, big.s2)), 'INVALID_ARGUMENT', 'base and target of different volumes');
  });

  it('many snapshots: each consecutive delta holds its step\'s writes, and base + delta(first, last) rebuilds the last', async () => {
    const v = await blockVolume('many-v', GiB);
    const w = new Writer(v.path);
    const snaps = [await snapshot('many-0', v.id)];
    for (let i = 1; i <= 8; i++) {
      const before = w.touched.length;
      w.write(10 + i, i * 97 * MiB + i * 4096, BLOCK * i);
      w.write(10 + i, 5 * MiB, 4096); // the same place each time
      snaps.push(await snapshot(`many-${i}`, v.id));
      const step = await deltaOf(snaps[i - 1]!, snaps[i]!);
      const got = rangesOf(step).map((r) => ({ start: Number(r.byte_offset), end: Number(r.byte_offset) + Number(r.size_bytes) }));
      for (const t of w.touched.slice(before)) {
        assert.ok(got.some((g) => g.start <= t.start && g.end >= t.end), `step ${i}: [${t.start}, ${t.end}) reported`);
      }
    }
    await unpublish(v.id);
    const first = await blockVolume('many-r0', GiB, snaps[0]);
    const last = await blockVolume('many-r8', GiB, snaps[8]);
    assertProof('many delta(0, 8)', reconstructDelta(first.path, last.path, rangesOf(await deltaOf(snaps[0]!, snaps[8]!)), GiB, w.windows()));
    await unpublish(first.id);
    await unpublish(last.id);
  });

  it('after a crash that left the metadata snapshot held: the restart releases it and answers the same', async () => {
    await stopDriver(d, 'SIGKILL');
    // What a kill in the middle of a stream leaves: the kernel's hold, and the record saying it is ours.
    sh('dmsetup', ['message', POOL, '0', 'reserve_metadata_snap']);
    const poolFile = join(STATE, 'store', 'pool.json');
    writeFileSync(poolFile, JSON.stringify({ ...JSON.parse(readFileSync(poolFile, 'utf8')), metadataSnapHeld: true }));
    assert.notEqual(sh('dmsetup', ['status', POOL]).trim().split(/\s+/)[6], '-', 'held before the restart');
    d = await startDriver(OVERPROVISION);
    md.close();
    md = new MetadataClient(ENDPOINT);
    assert.match(readFileSync(d.log, 'utf8'), /released a metadata snapshot left held by a crash/);
    // The start's first pool check (thin_ls) may hold a fresh one for a moment.
    for (const t0 = Date.now(); sh('dmsetup', ['status', POOL]).trim().split(/\s+/)[6] !== '-';) {
      assert.ok(Date.now() - t0 < 60_000, 'no metadata snapshot held a minute after the start');
      await sleep(250);
    }
    const again = await deltaOf(small.s1, small.s2);
    assert.deepEqual(rangesOf(again), small.ranges);
  });
});
