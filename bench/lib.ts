// Small helpers of the benchmark: statistics, scripts, a CSI client with fast reconnects,
// Prometheus text parsing and the table renderer. Bundled with bench/bench.ts.
import { execFile, type ExecFileException } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../src/csi/proto.ts';

export interface Stats { n: number; median: number; p95: number; mean: number; min: number; max: number }

/** Nearest-rank percentile over a sorted copy; milliseconds in, milliseconds out. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(s.length, rank) - 1]!;
}

export function stats(xs: readonly number[]): Stats {
  if (xs.length === 0) return { n: 0, median: NaN, p95: NaN, mean: NaN, min: NaN, max: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { n: s.length, median: mid, p95: percentile(s, 95), mean: s.reduce((a, b) => a + b, 0) / s.length, min: s[0]!, max: s[s.length - 1]! };
}

export interface ScriptResult { us: number; fields: Record<string, number>; stdout: string }

/** Runs a bench script; it prints `key=N` lines (N in microseconds), `us` being the timed span. */
export function script(file: string, args: Array<string | number>, timeoutMs = 600_000): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    execFile('bash', [file, ...args.map(String)], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20, env: { ...process.env, DM_DISABLE_UDEV: '1', LC_ALL: 'C' } },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (err) return reject(new Error(`${file} ${args.join(' ')} failed (${err.code ?? err.signal}): ${stderr.trim() || stdout.trim()}`));
        const fields: Record<string, number> = {};
        for (const m of stdout.matchAll(/^(\w+)=(\d+)$/gm)) fields[m[1]!] = Number(m[2]);
        resolve({ us: fields.us ?? NaN, fields, stdout });
      });
  });
}

export function sh(cmd: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, env: { ...process.env, DM_DISABLE_UDEV: '1', LC_ALL: 'C' } },
      (err: ExecFileException | null, stdout: string, stderr: string) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim()}`)) : resolve(stdout)));
  });
}

type Unary = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;
export interface Svc { call<T = Record<string, any>>(method: string, req?: object, timeoutMs?: number): Promise<T> }
export interface Csi { identity: Svc; controller: Svc; node: Svc; close(): void }

/**
 * Clients for the three CSI services. Short reconnect back-off: the default (1 s, growing)
 * would add up to seconds to a restart measured by polling Probe.
 */
export function connect(endpoint: string): Csi {
  const csi = loadCsi().csi.v1;
  const creds = grpc.credentials.createInsecure();
  const opts = { 'grpc.initial_reconnect_backoff_ms': 20, 'grpc.min_reconnect_backoff_ms': 20, 'grpc.max_reconnect_backoff_ms': 50 };
  const wrap = (c: grpc.Client): Svc => ({
    call<T>(method: string, req: object = {}, timeoutMs = 300_000): Promise<T> {
      const fn = (c as unknown as Record<string, Unary>)[method];
      if (typeof fn !== 'function') return Promise.reject(new Error(`no CSI method ${method}`));
      return new Promise<T>((resolve, reject) => {
        fn.call(c, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(new Error(`${method}: ${err.details || err.message}`)) : resolve(res as T)));
      });
    },
  });
  const ic = new csi.Identity(endpoint, creds, opts);
  const cc = new csi.Controller(endpoint, creds, opts);
  const nc = new csi.Node(endpoint, creds, opts);
  return { identity: wrap(ic), controller: wrap(cc), node: wrap(nc), close: () => { ic.close(); cc.close(); nc.close(); } };
}

export interface Histogram { buckets: Array<[number, number]>; sum: number; count: number }

/** One histogram (no labels) from Prometheus text exposition. */
/** One histogram from a scrape; `label` (say 'metadata="skipped"') keeps only the series carrying it. */
export function parseHistogram(text: string, name: string, label?: string): Histogram {
  const buckets: Array<[number, number]> = [];
  let sum = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    if (label && !line.includes(label)) continue;
    if (line.startsWith(`${name}_bucket{`)) {
      const m = /le="([^"]+)"\}\s+(\S+)/.exec(line);
      if (m) buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
    } else if (line.startsWith(`${name}_sum`)) sum = Number(line.split(/\s+/)[1]);
    else if (line.startsWith(`${name}_count`)) count = Number(line.split(/\s+/)[1]);
  }
  return { buckets, sum, count };
}

export function histDelta(a: Histogram, b: Histogram): Histogram {
  return { buckets: b.buckets.map(([le, n], i) => [le, n - (a.buckets[i]?.[1] ?? 0)]), sum: b.sum - a.sum, count: b.count - a.count };
}

/** Upper bound of the bucket holding quantile q (what a histogram can say). */
export function histQuantile(h: Histogram, q: number): number {
  const want = q * h.count;
  for (const [le, n] of h.buckets) if (n >= want) return le;
  return Infinity;
}

const f = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
const pad = (rows: string[][]) => {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ')).join('\n');
};

/** The stdout table, from the JSON results. */
export function render(r: any): string {
  const out: string[] = [];
  out.push(`dmthin-csi benchmark  ${r.meta.date}  kernel ${r.meta.kernel}  ${r.meta.cpus} vCPU  ${r.meta.memMiB} MiB  (${r.meta.mode})`);
  out.push(`operations: ${r.meta.reps} repetitions per contender, contenders alternated (rotated order) each repetition; times in ms`);
  const rows = [['operation', 'driver med', 'p95', 'bare med', 'p95', 'lvm med', 'p95', 'ioctl floor med', 'drv/bare', 'lvm/drv', 'drv/floor']];
  for (const [op, o] of Object.entries<any>(r.ops ?? {})) {
    rows.push([op, f(o.driver.median), f(o.driver.p95), f(o.bare.median), f(o.bare.p95), f(o.lvm.median), f(o.lvm.p95), f(o.floor?.median, 2),
      f(o.driverOverBare, 2), f(o.lvmOverDriver, 2), f(o.driverOverFloor, 1)]);
  }
  out.push(pad(rows));
  if (r.suspend) {
    const s = r.suspend;
    out.push('');
    out.push(`suspend window (origin frozen), ms: driver histogram n=${s.driver.count} mean ${f(s.driver.mean)} (median bucket <= ${f(s.driver.medianBucket)}, p95 bucket <= ${f(s.driver.p95Bucket)}); ` +
      `bare suspend->create_snap->resume median ${f(s.bare.median)} p95 ${f(s.bare.p95)}; driver mean / bare mean ${f(s.ratioMean, 2)}`);
  }
  if (r.driverMetrics) {
    out.push('');
    out.push('driver profile over the ops phase (its own histograms: mean ms, count):');
    const dr = [['series', 'count', 'mean ms']];
    for (const [k, v] of Object.entries<any>(r.driverMetrics)) dr.push([k, String(v.count), f(v.meanMs)]);
    out.push(pad(dr));
  }
  if (r.scale) {
    const s = r.scale;
    out.push('');
    out.push(`scale: ${s.volumes} volumes${s.snapshots ? ` + ${s.snapshots} snapshots` : ''} in one pool`);
    const sr = [['concurrency', 'creates', 'seconds', 'creates/s', 'vs c=1', 'call ms', 'server ms', 'message ms', 'msgs/op', 'driver cpu ms/op', 'client cpu ms/op', 'guest busy %']];
    const cpuCols = (t: any) => [f(t.callMs), f(t.serverMs), f(t.messageMs), f(t.messagesPerOp, 2), f(t.driverCpuMs), f(t.clientCpuMs), f(t.guestBusy === undefined ? undefined : t.guestBusy * 100, 0)];
    for (const t of s.throughput) sr.push([String(t.concurrency), String(t.count), f(t.seconds, 2), f(t.perSecond, 2), f(t.perSecond / s.throughput[0].perSecond, 2), ...cpuCols(t)]);
    if (s.snapshotThroughput) sr.push([`snapshots c=${s.snapshotThroughput.concurrency}`, String(s.snapshotThroughput.count), f(s.snapshotThroughput.seconds, 2), f(s.snapshotThroughput.perSecond, 2), '', ...cpuCols(s.snapshotThroughput)]);
    out.push(pad(sr));
    out.push(`ListVolumes over all ${s.listed ?? ''} volumes (one page) median ${f(s.listAll.median)} ms p95 ${f(s.listAll.p95)} ms; paged by 100: median ${f(s.listPaged.median)} ms`);
    out.push(`restart (process start -> Probe ready): ${f(s.restartMs)} ms with ${s.devices ?? s.volumes + (s.snapshots ?? 0)} devices, ${f(s.restartEmptyMs)} ms with none; reconcile itself (driver histogram) ${f(s.reconcileMs)} ms; the pass after it that also reads the pool metadata ${f(s.fullReconcileMs)} ms`);
    out.push(`bare dmsetup status+info+table walk median ${f(s.bareWalk.median)} ms; restart/walk ${f(s.restartOverWalk, 2)}, (restart - empty restart)/walk ${f(s.restartDeltaOverWalk, 2)}, reconcile/walk ${f(s.reconcileOverWalk, 2)}, with metadata/walk ${f(s.fullReconcileOverWalk, 2)}`);
    out.push(`driver peak RSS (VmHWM): ${f(s.peakRssBeforeListMiB)} MiB after the creates, ${f(s.peakRssMiB)} MiB after the ListVolumes calls, ${f(s.peakRssAfterRestartMiB)} MiB after restart + ListVolumes`);
  }
  if (r.mkfs) {
    out.push('');
    out.push(`mkfs (${r.mkfs.reps} rep(s) each), ms: driver NodeStage with mkfs vs bare mkfs with defaults (discard) and with the driver's options, on fresh thin devices`);
    const mr = [['fs size', 'NodeStage+mkfs', 'mkfs defaults', 'mkfs driver opts', 'defaults/NodeStage']];
    for (const m of r.mkfs.rows) mr.push([`${m.fs} ${m.size}`, f(m.driver.median), f(m.bareDefault.median), f(m.bareDriverOpts.median), f(m.bareDefault.median / m.driver.median, 2)]);
    out.push(pad(mr));
  }
  if (r.errors?.length) {
    out.push('');
    out.push('errors:');
    for (const e of r.errors) out.push(`  ${e}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- helpers of the phases

export function vmHWM(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

/** Mean latency per label set of the driver's dm-command and RPC histograms (its own profile of the ops phase). */
export function labelledMeans(text: string): Record<string, { count: number; meanMs: number }> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/^dmthin_csi_(dm_command|rpc)_duration_seconds_(sum|count)\{([^}]*)\}\s+(\S+)$/gm)) {
    const key = `${m[1]} ${m[3]!.replace(/"/g, '')}`;
    (m[2] === 'sum' ? sums : counts).set(key, Number(m[4]));
  }
  const out: Record<string, { count: number; meanMs: number }> = {};
  for (const [k, c] of counts) if (c > 0) out[k] = { count: c, meanMs: ((sums.get(k) ?? 0) / c) * 1000 };
  return out;
}

/** Runs fn(0..n-1), at most `conc` at a time. */
export async function pool<T>(n: number, conc: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(conc, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}
