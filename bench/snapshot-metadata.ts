// The cost of changed-block tracking (SnapshotMetadata) as the pool grows: the time of a
// GetMetadataDelta against the volume's size, what is mapped and how many snapshots the pool
// holds, next to the time to read the changed data itself. Runs in the test VM (bench/run.sh
// --snapshot-metadata); see bench/README.md.
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MetadataClient, rangesOf } from '../test/support/metadata-client.ts';
import { DriverProcess } from './driver.ts';
import { sh, stats } from './lib.ts';

const ROOT = process.cwd();
const WORK = '/tmp/bench-smd';
const STATE = '/var/lib/dmthin-bench-smd';
const ENDPOINT = 'unix:///run/dmthin-bench-smd/csi.sock';
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const BLOCK = 64 * 1024;
const REPS = Number(process.env.SMD_REPS ?? 3);
const OUT = process.argv[2] ?? join(ROOT, 'bench/out/snapshot-metadata.md');

interface Scenario { sizeGiB: number; mappedMiB: number; extraSnapshots: number }
/** Three axes through one middle point (16 GiB, 64 MiB mapped, no extra snapshots). */
const SCENARIOS: Scenario[] = [
  { sizeGiB: 1, mappedMiB: 64, extraSnapshots: 0 },
  { sizeGiB: 16, mappedMiB: 64, extraSnapshots: 0 },
  { sizeGiB: 256, mappedMiB: 64, extraSnapshots: 0 },
  { sizeGiB: 16, mappedMiB: 16, extraSnapshots: 0 },
  { sizeGiB: 16, mappedMiB: 256, extraSnapshots: 0 },
  { sizeGiB: 16, mappedMiB: 64, extraSnapshots: 20 },
];

const drv = new DriverProcess({ root: ROOT, work: WORK, state: STATE, endpoint: ENDPOINT, pool: 'dmthin-bench-smd', metrics: '127.0.0.1:19818', nodeFlags: [], logLevel: 'warn' });
const ctl = () => drv.running.csi.controller;
const node = () => drv.running.csi.node;
const blockCap = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

async function blockVolume(name: string, size: number): Promise<{ id: string; path: string }> {
  const id = (await ctl().call<any>('CreateVolume', { name, capacity_range: { required_bytes: size }, volume_capabilities: [blockCap] })).volume.volume_id as string;
  const path = `${WORK}/pods/${id}`;
  await node().call('NodeStageVolume', { volume_id: id, staging_target_path: `${WORK}/staging/${id}`, volume_capability: blockCap });
  await node().call('NodePublishVolume', { volume_id: id, staging_target_path: `${WORK}/staging/${id}`, target_path: path, volume_capability: blockCap, readonly: false });
  return { id, path };
}

/** One pool block in two, `count` of them from offset 0: every one a run of its own in the metadata. */
function writeBlocks(path: string, count: number, every: number, fill: number): void {
  const fd = openSync(path, 'r+');
  const buf = Buffer.alloc(BLOCK, fill);
  for (let i = 0; i < count; i += every) writeSync(fd, buf, 0, BLOCK, i * 2 * BLOCK);
  fsyncSync(fd);
  closeSync(fd);
}

function readRanges(path: string, ranges: Array<{ byte_offset: number | string; size_bytes: number | string }>): number {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(4 * MiB);
  let bytes = 0;
  for (const r of ranges) {
    for (let off = Number(r.byte_offset), end = off + Number(r.size_bytes); off < end;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, end - off), off);
      off += n;
      bytes += n;
    }
  }
  closeSync(fd);
  return bytes;
}

const dropCaches = () => writeFileSync('/proc/sys/vm/drop_caches', '3');

async function measure(md: MetadataClient, s: Scenario, i: number) {
  const blocks = (s.mappedMiB * MiB) / BLOCK;
  const v = await blockVolume(`smd-${i}`, s.sizeGiB * GiB);
  writeBlocks(v.path, blocks, 1, 1);
  const s1 = (await ctl().call<any>('CreateSnapshot', { name: `smd-${i}-s1`, source_volume_id: v.id })).snapshot.snapshot_id as string;
  writeBlocks(v.path, blocks, 4, 2); // a quarter of them changed
  for (let k = 0; k < s.extraSnapshots; k++) await ctl().call('CreateSnapshot', { name: `smd-${i}-x${k}`, source_volume_id: v.id });
  const s2 = (await ctl().call<any>('CreateSnapshot', { name: `smd-${i}-s2`, source_volume_id: v.id })).snapshot.snapshot_id as string;
  const delta: number[] = [];
  const alloc: number[] = [];
  const read: number[] = [];
  let ranges: ReturnType<typeof rangesOf> = [];
  for (let r = 0; r < REPS; r++) {
    let t0 = performance.now();
    const d = await md.delta({ base_snapshot_id: s1, target_snapshot_id: s2 });
    delta.push(performance.now() - t0);
    if (d.code !== 'OK') throw new Error(`delta: ${d.code} ${d.details}`);
    ranges = rangesOf(d);
    t0 = performance.now();
    const a = await md.allocated({ snapshot_id: s2 });
    alloc.push(performance.now() - t0);
    if (a.code !== 'OK') throw new Error(`allocated: ${a.code} ${a.details}`);
    dropCaches();
    t0 = performance.now();
    readRanges(v.path, ranges); // the origin holds s2's content until it is written again
    read.push(performance.now() - t0);
  }
  const changed = ranges.reduce((n, r) => n + Number(r.size_bytes), 0);
  await node().call('NodeUnpublishVolume', { volume_id: v.id, target_path: v.path });
  await node().call('NodeUnstageVolume', { volume_id: v.id, staging_target_path: `${WORK}/staging/${v.id}` });
  return { ...s, ranges: ranges.length, changedMiB: changed / MiB, deltaMs: stats(delta).median, allocatedMs: stats(alloc).median, readMs: stats(read).median };
}

async function main(): Promise<void> {
  rmSync(STATE, { recursive: true, force: true });
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  await drv.start();
  const md = new MetadataClient(ENDPOINT);
  const rows = [];
  try {
    for (const [i, s] of SCENARIOS.entries()) {
      rows.push(await measure(md, s, i));
      console.log(JSON.stringify(rows.at(-1)));
    }
  } finally {
    md.close();
    await drv.stop();
  }
  const f = (x: number) => x.toFixed(x < 10 ? 1 : 0);
  const lines = [
    `SnapshotMetadata, ${REPS} reps (medians), 64 KiB pool blocks, every other block written, a quarter of them rewritten between the snapshots.`,
    `Guest kernel ${(await sh('uname', ['-r'])).trim()}, qemu TCG; the pool's loop files on the guest's tmpfs.`,
    '',
    '| volume | mapped | extra snapshots | ranges | changed | GetMetadataDelta ms | GetMetadataAllocated ms | read the changed data ms | delta / read |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.sizeGiB} GiB | ${r.mappedMiB} MiB | ${r.extraSnapshots} | ${r.ranges} | ${f(r.changedMiB)} MiB | ${f(r.deltaMs)} | ${f(r.allocatedMs)} | ${f(r.readMs)} | ${(r.deltaMs / r.readMs).toFixed(2)} |`),
    '',
    `Volume size x256 (1 → 256 GiB, 64 MiB mapped): delta time x${(rows[2]!.deltaMs / rows[0]!.deltaMs).toFixed(2)}.`,
    `Mapped x16 (16 → 256 MiB, 16 GiB volume): delta time x${(rows[4]!.deltaMs / rows[3]!.deltaMs).toFixed(2)}.`,
    `Snapshots in the pool +20: delta time x${(rows[5]!.deltaMs / rows[1]!.deltaMs).toFixed(2)}.`,
  ];
  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  writeFileSync(OUT, `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1); });
