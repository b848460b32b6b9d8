// The benchmark: the driver over gRPC vs the bare dm command sequence (bench/bare/ops.sh) vs
// LVM thin (bench/lvm/lvm.sh), in the real-kernel test VM. Run it with bench/run.sh.
//   node dist/bench.mjs [--quick] [--reps N] [--scale N] [--scale-snapshots N] [--mkfs-reps N]
//                       [--list-reps N] [--skip ops,scale,mkfs] [--out FILE]
//   node dist/bench.mjs --render FILE      prints the table of a results file
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { sleep } from '../src/system/delay.ts';
import { CpuMeter } from './cpu.ts';
import { DriverProcess, tail } from './driver.ts';
import { floor } from './floor.ts';
import { Writers } from './writers.ts';
import { histDelta, histQuantile, labelledMeans, parseHistogram, pool, render, script, sh, stats, timed, vmHWM, type Histogram } from './lib.ts';

const ROOT = process.cwd();
const BARE = join(ROOT, 'bench/bare/ops.sh');
const LVM = join(ROOT, 'bench/lvm/lvm.sh');
const WORK = '/tmp/bench';
const STATE = join(WORK, 'driver');
const ENDPOINT = `unix://${WORK}/csi.sock`;
const POOL = 'bench-drv';
const BPOOL = 'bench-bare';
const VG = 'benchvg';
const METRICS = '127.0.0.1:9464';
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const VOL = 256 * MiB;
const mountCap = (fs = 'ext4') => ({ mount: { fs_type: fs, mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } });

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean' }, reps: { type: 'string' }, scale: { type: 'string' }, 'scale-snapshots': { type: 'string' },
    'mkfs-reps': { type: 'string' }, 'list-reps': { type: 'string' }, skip: { type: 'string' }, out: { type: 'string' }, render: { type: 'string' },
    'node-flags': { type: 'string' }, 'driver-log-level': { type: 'string' },
  },
});
if (a.render) {
  console.log(render(JSON.parse(readFileSync(a.render, 'utf8'))));
  process.exit(0);
}
const quick = a.quick ?? false;
const REPS = Number(a.reps ?? (quick ? 3 : 15));
const SCALE = Number(a.scale ?? (quick ? 24 : 1000));
const SCALE_SNAPS = Number(a['scale-snapshots'] ?? SCALE);
const MKFS_REPS = Number(a['mkfs-reps'] ?? (quick ? 1 : 2));
const LIST_REPS = Number(a['list-reps'] ?? (quick ? 2 : 5));
const skip = new Set((a.skip ?? '').split(',').filter(Boolean));
/**
 * The driver's node flags: by default those it runs with (`npm start`, the image's NODE_OPTIONS);
 * `--node-flags=` (empty) measures Node's defaults, for comparing V8 heap settings.
 */
const NODE_FLAGS = (a['node-flags'] ?? '--max-semi-space-size=2 --optimize-for-size').split(/\s+/).filter(Boolean);
/** Profiling aid: `--driver-log-level debug` logs every command the driver runs, with its duration. */
const DRIVER_LOG = a['driver-log-level'] ?? 'info';
const OUT = a.out ?? join(ROOT, 'bench/out/results.json');

const ms = (us: number) => us / 1000;
const now = () => performance.now();
const log = (...x: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...x);
const results: any = { meta: {}, ops: {}, errors: [] as string[] };

// ---------------------------------------------------------------- the driver process
const drv = new DriverProcess({ root: ROOT, work: WORK, state: STATE, endpoint: ENDPOINT, pool: POOL, metrics: METRICS, nodeFlags: NODE_FLAGS, logLevel: DRIVER_LOG });
const startDriver = () => drv.start();
const stopDriver = () => drv.stop();
const scrape = () => drv.scrape();
const ctl = () => drv.running.csi.controller;
const node = () => drv.running.csi.node;
async function createVol(name: string, size = VOL, fs = 'ext4', source?: { snapshot_id: string }): Promise<{ id: string; ctx: Record<string, string> }> {
  const r = await ctl().call<any>('CreateVolume', {
    name, capacity_range: { required_bytes: size }, volume_capabilities: [mountCap(fs)],
    ...(source ? { volume_content_source: { snapshot: source } } : {}),
  });
  return { id: r.volume.volume_id, ctx: r.volume.volume_context ?? {} };
}
const stage = (v: { id: string; ctx: Record<string, string> }, path: string, fs = 'ext4') =>
  node().call('NodeStageVolume', { volume_id: v.id, staging_target_path: path, volume_capability: mountCap(fs), volume_context: v.ctx });
const unstage = (v: { id: string }, path: string) => node().call('NodeUnstageVolume', { volume_id: v.id, staging_target_path: path });

const writers = new Writers();

// ---------------------------------------------------------------- operations, three contenders
type Who = 'driver' | 'bare' | 'lvm';
type Runner = Record<Who, (i: number) => Promise<number>>;
const ORDER: Who[] = ['driver', 'bare', 'lvm'];

/**
 * `stamps`: the driver's op sends a pool message, whose transaction stamp follows the reply; it
 * is waited for, untimed, before the next contender starts (the bare script runs its own stamp
 * after its clock stops too), so no contender is timed beside another's leftover work.
 */
async function measure(op: string, reps: number, run: Runner, { stamps = false, floorRun }: { stamps?: boolean; floorRun?: (i: number) => Promise<number> } = {}): Promise<void> {
  const samples: Record<Who, number[]> = { driver: [], bare: [], lvm: [] };
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < 3; k++) {
      const who = ORDER[(i + k) % 3]!;
      const tx = stamps && who === 'driver' ? drv.storedTx() : undefined;
      samples[who].push(await run[who](i));
      if (tx !== undefined && !await drv.stamped(tx)) results.errors.push(`${op}: no transaction stamp within 10 s of the driver's reply`);
    }
  }
  const d = stats(samples.driver);
  const b = stats(samples.bare);
  const l = stats(samples.lvm);
  // The ioctl floor after the three, in a tight loop of its own (no contender between its runs).
  const floorSamples: number[] = [];
  if (floorRun) for (let i = 0; i < reps; i++) floorSamples.push(await floorRun(i));
  const fl = floorRun ? stats(floorSamples) : undefined;
  results.ops[op] = {
    driver: d, bare: b, lvm: l, driverOverBare: d.median / b.median, lvmOverDriver: l.median / d.median, samples,
    ...(fl ? { floor: fl, driverOverFloor: d.median / fl.median, floorSamples } : {}),
  };
  log(`${op}: driver ${d.median.toFixed(1)} ms, bare ${b.median.toFixed(1)} ms, lvm ${l.median.toFixed(1)} ms${fl ? `, ioctl floor ${fl.median.toFixed(2)} ms` : ''} (medians of ${reps})`);
}

let bareId = 1;
async function bareCreate(): Promise<number> {
  const id = bareId++;
  await script(BARE, ['create', BPOOL, id]);
  return id;
}

async function opsPhase(): Promise<void> {
  const R = REPS;
  // create (the volumes are deleted again in the delete phase)
  const dVols: Array<{ id: string; ctx: Record<string, string> }> = [];
  const bIds: number[] = [];
  const lNames: string[] = [];
  const fIds: number[] = [];
  await measure('create', R, {
    driver: async (i) => { const [t, v] = await timed(() => createVol(`c-${i}`)); dVols.push(v); return t; },
    bare: async () => { const id = bareId++; bIds.push(id); return ms((await script(BARE, ['create', BPOOL, id])).us); },
    lvm: async (i) => {
      const r = await script(LVM, ['create', VG, `c${i}`, '256M']);
      lNames.push(`c${i}`);
      await script(LVM, ['deactivate', VG, `c${i}`]); // lvcreate activates; the others do not: delete inactive everywhere
      return ms(r.us);
    },
  }, { stamps: true, floorRun: () => { const id = bareId++; fIds.push(id); return floor.create(BPOOL, id); } });

  // snapshot of an active, mounted volume under write
  const dOrigin = await createVol('origin');
  const dMnt = join(WORK, 'mnt/drv-origin');
  await stage(dOrigin, dMnt);
  const bOrigin = await bareCreate();
  const bMnt = join(WORK, 'mnt/bare-origin');
  await script(BARE, ['activate', BPOOL, 'bare-origin', bOrigin, VOL]);
  await script(BARE, ['mkfs', '/dev/mapper/bare-origin', 'ext4', 'driver']);
  mkdirSync(bMnt, { recursive: true });
  await sh('mount', ['/dev/mapper/bare-origin', bMnt]);
  const lMnt = join(WORK, 'mnt/lvm-origin');
  await script(LVM, ['create', VG, 'origin', '256M']);
  await script(BARE, ['mkfs', `/dev/mapper/${VG}-origin`, 'ext4', 'driver']);
  mkdirSync(lMnt, { recursive: true });
  await sh('mount', [`/dev/mapper/${VG}-origin`, lMnt]);
  for (const m of [dMnt, bMnt, lMnt]) writers.start(m);
  await sleep(1000);
  const h0 = parseHistogram(await scrape(), 'dmthin_csi_snapshot_suspend_seconds');
  const dSnaps: string[] = [];
  const bSnaps: number[] = [];
  const bWindows: number[] = [];
  await measure('snapshot (active, under write)', R, {
    driver: async (i) => {
      const [t, r] = await timed(() => ctl().call<any>('CreateSnapshot', { name: `s-${i}`, source_volume_id: dOrigin.id }));
      dSnaps.push(r.snapshot.snapshot_id);
      return t;
    },
    bare: async () => {
      const id = bareId++;
      const r = await script(BARE, ['snap-active', BPOOL, id, bOrigin, 'bare-origin']);
      bSnaps.push(id);
      bWindows.push(ms(r.fields.window_us!));
      return ms(r.us);
    },
    lvm: async (i) => ms((await script(LVM, ['snapshot', VG, `s${i}`, 'origin'])).us),
  }, { stamps: true, floorRun: () => floor.snapshot(BPOOL, bareId++, bOrigin, 'bare-origin') });
  const h1 = parseHistogram(await scrape(), 'dmthin_csi_snapshot_suspend_seconds');
  await writers.stop();
  const hd: Histogram = histDelta(h0, h1);
  const bw = stats(bWindows);
  results.suspend = {
    driver: { count: hd.count, mean: (hd.sum / hd.count) * 1000, medianBucket: histQuantile(hd, 0.5) * 1000, p95Bucket: histQuantile(hd, 0.95) * 1000 },
    bare: bw, ratioMean: ((hd.sum / hd.count) * 1000) / bw.mean,
  };
  log(`suspend window: driver mean ${results.suspend.driver.mean.toFixed(1)} ms (n=${hd.count}), bare mean ${bw.mean.toFixed(1)} ms`);

  // expand of the (still mounted) origins: +16 MiB per repetition, table reload + resume
  await measure('expand (active)', R, {
    driver: async (i) => (await timed(() => ctl().call('ControllerExpandVolume', { volume_id: dOrigin.id, capacity_range: { required_bytes: VOL + (i + 1) * 16 * MiB } })))[0],
    bare: async (i) => ms((await script(BARE, ['expand', BPOOL, 'bare-origin', bOrigin, VOL + (i + 1) * 16 * MiB])).us),
    lvm: async (i) => ms((await script(LVM, ['expand', VG, 'origin', `${256 + (i + 1) * 16}M`])).us),
  }, { floorRun: (i) => floor.expand(BPOOL, 'bare-origin', bOrigin, VOL + (R + i + 1) * 16 * MiB) });

  // restore: a new volume from the first snapshot (inactive source: no suspend)
  await measure('restore from snapshot', R, {
    driver: async (i) => (await timed(() => createVol(`r-${i}`, VOL, 'ext4', { snapshot_id: dSnaps[0]! })))[0],
    bare: async () => ms((await script(BARE, ['restore', BPOOL, bareId++, bSnaps[0]!])).us),
    lvm: async (i) => ms((await script(LVM, ['snapshot', VG, `r${i}`, 's0'])).us),
  }, { stamps: true, floorRun: () => floor.restore(BPOOL, bareId++, bSnaps[0]!) });

  // stage without mkfs: activate + mount of an existing filesystem (unstage untimed)
  const dSv = await createVol('stagevol');
  const dSMnt = join(WORK, 'mnt/drv-stage');
  await stage(dSv, dSMnt);
  await unstage(dSv, dSMnt);
  const bSv = await bareCreate();
  await script(BARE, ['activate', BPOOL, 'bare-stage', bSv, VOL]);
  await script(BARE, ['mkfs', '/dev/mapper/bare-stage', 'ext4', 'driver']);
  await sh('dmsetup', ['remove', 'bare-stage']);
  const bSMnt = join(WORK, 'mnt/bare-stage');
  await script(LVM, ['create', VG, 'stagev', '256M']);
  await script(BARE, ['mkfs', `/dev/mapper/${VG}-stagev`, 'ext4', 'driver']);
  await script(LVM, ['deactivate', VG, 'stagev']);
  const lSMnt = join(WORK, 'mnt/lvm-stage');
  await measure('stage (no mkfs)', R, {
    driver: async () => { const [t] = await timed(() => stage(dSv, dSMnt)); await unstage(dSv, dSMnt); return t; },
    bare: async () => { const r = await script(BARE, ['stage', BPOOL, 'bare-stage', bSv, VOL, bSMnt, 'ext4']); await script(BARE, ['unstage', 'bare-stage', bSMnt]); return ms(r.us); },
    lvm: async () => { const r = await script(LVM, ['stage', VG, 'stagev', lSMnt, 'ext4']); await script(LVM, ['unstage', VG, 'stagev', lSMnt]); return ms(r.us); },
  }, { floorRun: () => floor.stage(BPOOL, 'floor-stage', bSv, VOL, join(WORK, 'mnt/floor-stage')) });

  // delete the (inactive) volumes of the create phase
  await measure('delete', R, {
    driver: async (i) => (await timed(() => ctl().call('DeleteVolume', { volume_id: dVols[i]!.id })))[0],
    bare: async (i) => ms((await script(BARE, ['delete', BPOOL, bIds[i]!])).us),
    lvm: async (i) => ms((await script(LVM, ['delete', VG, lNames[i]!])).us),
  }, { stamps: true, floorRun: (i) => floor.delete(BPOOL, fIds[i]!) });
  await unstage(dOrigin, dMnt);
  results.driverMetrics = labelledMeans(await scrape());
}

// ---------------------------------------------------------------- scale (driver only, plus the bare walk)
async function scalePhase(restartEmptyMs: number): Promise<void> {
  const per = [Math.floor(SCALE / 3), Math.floor(SCALE / 3), SCALE - 2 * Math.floor(SCALE / 3)];
  const conc = [1, 8, 32];
  const throughput = [];
  const ids: string[] = [];
  let k = 0;
  // Untimed warm-up: a fresh driver's first requests pay for JIT and first-use codec compilation,
  // which would otherwise land on the concurrency-1 phase alone (when this phase runs first).
  for (let i = 0; i < 5; i++) {
    const v = await createVol(`warm-${i}`, 64 * MiB);
    await ctl().call('DeleteVolume', { volume_id: v.id });
  }
  const meter = new CpuMeter(drv.running.child.pid!, scrape);
  for (let j = 0; j < 3; j++) {
    const before = await meter.sample('CreateVolume');
    const t0 = now();
    const calls: number[] = [];
    await pool(per[j]!, conc[j]!, async () => { const [t, v] = await timed(() => createVol(`n-${k++}`, 64 * MiB)); calls.push(t); ids.push(v.id); });
    const seconds = (now() - t0) / 1000;
    const cpu = CpuMeter.between(before, await meter.sample('CreateVolume'), per[j]!);
    throughput.push({ concurrency: conc[j], count: per[j], seconds, perSecond: per[j]! / seconds, callMs: stats(calls).mean, ...cpu });
    log(`scale: ${per[j]} creates at concurrency ${conc[j]}: ${(per[j]! / seconds).toFixed(2)}/s ${JSON.stringify(cpu)}`);
  }
  let snapshotThroughput;
  if (SCALE_SNAPS > 0) {
    const n = Math.min(SCALE_SNAPS, ids.length);
    const before = await meter.sample('CreateSnapshot');
    const t0 = now();
    const calls: number[] = [];
    await pool(n, 32, async (i) => { calls.push((await timed(() => ctl().call('CreateSnapshot', { name: `ns-${i}`, source_volume_id: ids[i] })))[0]); });
    const seconds = (now() - t0) / 1000;
    const cpu = CpuMeter.between(before, await meter.sample('CreateSnapshot'), n);
    snapshotThroughput = { concurrency: 32, count: n, seconds, perSecond: n / seconds, callMs: stats(calls).mean, ...cpu };
    log(`scale: ${n} snapshots at concurrency 32: ${(n / seconds).toFixed(2)}/s ${JSON.stringify(cpu)}`);
  }
  const peakRssBeforeListMiB = vmHWM(drv.running.child.pid!);
  const listAll: number[] = [];
  const listPaged: number[] = [];
  let listed = 0;
  for (let i = 0; i < LIST_REPS; i++) {
    const [t, r] = await timed(() => ctl().call<any>('ListVolumes', {}));
    listed = r.entries.length;
    listAll.push(t);
    const t0 = now();
    let token = '';
    do {
      const p = await ctl().call<any>('ListVolumes', { max_entries: 100, starting_token: token });
      token = p.next_token;
    } while (token);
    listPaged.push(now() - t0);
  }
  let snapshotsListed = 0;
  let token = '';
  do {
    const p = await ctl().call<any>('ListSnapshots', { starting_token: token });
    snapshotsListed += p.entries.length;
    token = p.next_token;
  } while (token);
  if (listed < SCALE) results.errors.push(`ListVolumes returned ${listed} entries, expected >= ${SCALE}`);
  const peakRssMiB = vmHWM(drv.running.child.pid!);
  await stopDriver();
  const walk: number[] = [];
  for (let i = 0; i < 5; i++) walk.push(ms((await script(BARE, ['walk'])).us));
  const restartMs = await startDriver();
  const restartSocketMs = drv.lastSocketMs;
  const rec = parseHistogram(await scrape(), 'dmthin_csi_reconcile_duration_seconds', 'metadata="skipped"');
  const reconcileMs = rec.count > 0 ? (rec.sum / rec.count) * 1000 : NaN;
  const fullReconcileMs = await metadataPassMs();
  await ctl().call('ListVolumes', {});
  const peakRssAfterRestartMiB = vmHWM(drv.running.child.pid!);
  const bareWalk = stats(walk);
  results.scale = {
    volumes: SCALE, snapshots: snapshotThroughput?.count ?? 0, throughput, snapshotThroughput,
    listAll: stats(listAll), listPaged: stats(listPaged), listed, devices: listed + snapshotsListed,
    restartMs, restartSocketMs, restartEmptyMs, reconcileMs, fullReconcileMs, bareWalk,
    restartOverWalk: restartMs / bareWalk.median, restartDeltaOverWalk: (restartMs - restartEmptyMs) / bareWalk.median, reconcileOverWalk: reconcileMs / bareWalk.median, fullReconcileOverWalk: fullReconcileMs / bareWalk.median,
    peakRssBeforeListMiB, peakRssMiB, peakRssAfterRestartMiB,
  };
  log(`scale: restart ${restartMs.toFixed(0)} ms (empty ${restartEmptyMs.toFixed(0)} ms), reconcile ${reconcileMs.toFixed(0)} ms (with the metadata check, after the start: ${fullReconcileMs.toFixed(0)} ms), walk ${bareWalk.median.toFixed(0)} ms, RSS ${peakRssMiB.toFixed(0)} MiB`);
}

/** The pass that follows a start and also reads the pool metadata (thin_ls): waits for it, in ms. */
async function metadataPassMs(): Promise<number> {
  for (const t0 = now(); now() - t0 < 300_000; await sleep(200)) {
    const h = parseHistogram(await scrape(), 'dmthin_csi_reconcile_duration_seconds', 'metadata="checked"');
    if (h.count > 0) return (h.sum / h.count) * 1000;
  }
  return NaN;
}

// ---------------------------------------------------------------- mkfs
async function mkfsPhase(): Promise<void> {
  const rows = [];
  for (const fs of ['ext4', 'xfs']) {
    for (const [label, size] of [['1GiB', GiB], ['10GiB', 10 * GiB]] as const) {
      const d: number[] = [];
      const bd: number[] = [];
      const bo: number[] = [];
      for (let i = 0; i < MKFS_REPS; i++) {
        const v = await createVol(`m-${fs}-${label}-${i}`, size, fs);
        const mnt = join(WORK, `mnt/mkfs-${fs}-${label}-${i}`);
        d.push((await timed(() => stage(v, mnt, fs)))[0]);
        await unstage(v, mnt);
        await ctl().call('DeleteVolume', { volume_id: v.id });
        for (const [how, into] of [['default', bd], ['driver', bo]] as const) {
          const id = await bareCreate();
          await script(BARE, ['activate', BPOOL, 'bare-mkfs', id, size]);
          into.push(ms((await script(BARE, ['mkfs', '/dev/mapper/bare-mkfs', fs, how])).us));
          await script(BARE, ['delete', BPOOL, id, 'bare-mkfs']);
        }
      }
      rows.push({ fs, size: label, driver: stats(d), bareDefault: stats(bd), bareDriverOpts: stats(bo) });
      log(`mkfs ${fs} ${label}: NodeStage ${stats(d).median.toFixed(0)} ms, mkfs defaults ${stats(bd).median.toFixed(0)} ms, driver options ${stats(bo).median.toFixed(0)} ms`);
    }
  }
  results.mkfs = { reps: MKFS_REPS, rows };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  const t0 = now();
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  await sh('ip', ['link', 'set', 'lo', 'up']); // the guest has no network set up; /metrics is on loopback
  await sh('modprobe', ['xfs']).catch(() => undefined);
  await sh('modprobe', ['dm-snapshot']).catch(() => undefined);
  results.meta = {
    date: new Date().toISOString(), kernel: (await sh('uname', ['-r'])).trim(), cpus: cpus().length, memMiB: Math.round(totalmem() / MiB),
    cpuModel: cpus()[0]?.model ?? '', node: process.version,
    mode: quick ? 'quick' : 'full', reps: REPS, listReps: LIST_REPS, scale: skip.has('scale') ? 0 : SCALE, scaleSnapshots: skip.has('scale') ? 0 : SCALE_SNAPS, mkfsReps: MKFS_REPS, nodeFlags: NODE_FLAGS,
    skipped: [...skip],
  };
  log(`bench: reps ${REPS}, scale ${SCALE} (+${SCALE_SNAPS} snapshots), mkfs reps ${MKFS_REPS}, skip [${[...skip].join(',')}]`);
  await startDriver();
  await stopDriver();
  const restartEmptyMs = await startDriver(); // pool exists now: a restart with no devices
  log(`driver ready; empty restart ${restartEmptyMs.toFixed(0)} ms (socket after ${drv.lastSocketMs.toFixed(0)} ms)`);
  await script(BARE, ['setup', join(WORK, 'bare'), BPOOL, 256 * GiB, GiB]);
  await script(LVM, ['setup', join(WORK, 'lvm'), VG, 64 * GiB]);
  try {
    if (!skip.has('ops')) await opsPhase();
    if (!skip.has('mkfs')) await mkfsPhase();
    if (!skip.has('scale')) await scalePhase(restartEmptyMs);
  } catch (err) {
    results.errors.push(String((err as Error).stack ?? err));
    if (drv.current) results.errors.push(`driver log tail:\n${tail(drv.current.log)}`);
    // A failed write is most often the guest's tmpfs (which backs all three pools) running out.
    results.errors.push(`at the failure:\n${await sh('df', ['-k', '/tmp', '/']).catch(String)}${await sh('dmsetup', ['status', POOL, BPOOL]).catch(String)}`);
    console.error(err);
  } finally {
    await writers.stop().catch(() => undefined);
    if (drv.current) writeFileSync(join(ROOT, 'bench/out/driver-last.log'), readFileSync(drv.current.log));
    await stopDriver().catch(() => undefined);
  }
  results.meta.seconds = (now() - t0) / 1000;
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(results, null, 2));
  console.log('');
  console.log(render(results));
  console.log(`\nresults: ${OUT}  (${results.meta.seconds.toFixed(0)} s)`);
  if (results.errors.length) process.exitCode = 1;
}

if (!existsSync(join(ROOT, 'dist/dmthin-csi.mjs'))) throw new Error('dist/dmthin-csi.mjs missing: run bench/run.sh (it bundles first)');
mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
await main();
