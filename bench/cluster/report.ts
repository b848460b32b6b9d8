// The cluster bench's result: its shape, the per-volume costs and targets derived from it, and
// the markdown table (bench/cluster/main.ts --render re-prints one from the JSON).
import type { AgentStats } from './host.ts';
import { type Counts, isVolumeCost, isWrite } from './plane.ts';

export interface Phase {
  name: string; who: 'driver' | 'floor'; concurrency: number; n: number; ok: number;
  failures: string[]; failureCount: number; wallMs: number; perSecond: number; p50Ms: number; p99Ms: number;
  requests: Counts;
}

export interface ScaleSample { volumes: number; controllerCpuMs: number; controllerRssBytes: number; agentsCpuMs: number; hostRssBytes: number[] }

export interface Result {
  date: string;
  machine: { cpus: number; loadBefore: number[]; loadAfter: number[]; uptime?: string };
  config: { nodes: number; volumes: number; perHost: number; hosts: number; small: Record<number, number>; snapshots: number; controller: string };
  phases: Phase[]; snapshots: Phase[]; scale: ScaleSample[];
  background: { seconds: number; requests: Counts };
  watch: { beforeRestart: AgentStats[]; atEnd: AgentStats[] };
  restarts: { controllerMs: number; controllerObjects: number; agentMs: number; agentVolumes: number };
  etcd: { volumes: number; storedBytesPerVolume: number; dbInUseBytesPerVolume: number };
  leftover: { volumes: number; snapshots: number };
  /** The lists of dmthin.csi.io resources over the whole run: answers by HTTP code, and how many came from the watch cache. */
  lists?: { byCode: Counts; fromCache: number };
}

export function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

export function phase(r: Result, who: Phase['who'], name: string, concurrency: number): Phase | undefined {
  return r.phases.find((p) => p.who === who && p.name === name && p.concurrency === concurrency);
}

/** A phase's requests per completed operation, net of the idle background for as long as the phase ran. */
export function perOp(r: Result, p: Phase): Counts {
  const out: Counts = {};
  const scale = r.background.seconds > 0 ? p.wallMs / 1000 / r.background.seconds : 0;
  for (const [k, v] of Object.entries(p.requests)) {
    const net = v - (r.background.requests[k] ?? 0) * scale;
    if (net / p.ok >= 0.005) out[k] = net / p.ok;
  }
  return out;
}

export function writes(c: Counts): number {
  return Object.entries(c).filter(([k]) => isWrite(k) && isVolumeCost(k)).reduce((a, [, v]) => a + v, 0);
}

export function foreignEvents(r: Result): number {
  return [...r.watch.beforeRestart, ...r.watch.atEnd].reduce((a, s) => Math.max(a, s.foreign), 0);
}

export interface Target { what: string; value: string; target: string; met: boolean }

export function targets(r: Result): Target[] {
  const c = phase(r, 'driver', 'create', 64);
  const f = phase(r, 'floor', 'create', 64);
  const d = phase(r, 'driver', 'delete', 64);
  const ratio = c && f ? c.perSecond / f.perSecond : 0;
  const wc = c ? writes(perOp(r, c)) : NaN;
  const wd = d ? writes(perOp(r, d)) : NaN;
  const last = r.scale.at(-1);
  const rss = (last?.controllerRssBytes ?? 0) / 1048576;
  return [
    { what: 'provisioning rate at concurrency 64 / floor', value: `${ratio.toFixed(2)}x`, target: '>= 0.5x', met: ratio >= 0.5 },
    { what: 'API writes per created volume', value: wc.toFixed(2), target: '<= 4', met: wc <= 4 },
    { what: 'API writes per deleted volume', value: wd.toFixed(2), target: '<= 3', met: wd <= 3 },
    { what: "watch events for other nodes' objects (max over agents)", value: String(foreignEvents(r)), target: '0', met: foreignEvents(r) === 0 },
    { what: `controller RSS at ${last?.volumes ?? 0} volumes`, value: `${rss.toFixed(0)} MiB`, target: '<= 200 MiB', met: rss <= 200 },
    { what: `controller restart to Probe-ready (${r.restarts.controllerObjects} objects)`, value: `${(r.restarts.controllerMs / 1000).toFixed(2)} s`, target: '<= 10 s', met: r.restarts.controllerMs <= 10_000 },
    { what: `agent restart to Probe-ready (${r.restarts.agentVolumes} volumes)`, value: `${(r.restarts.agentMs / 1000).toFixed(2)} s`, target: '<= 2 s', met: r.restarts.agentMs <= 2000 },
  ];
}

const f1 = (x: number) => x.toFixed(1);
const mib = (b: number) => (b / 1048576).toFixed(0);

function rateRows(r: Result): string[] {
  const rows = ['| operation | concurrency | n | driver /s | floor /s | driver/floor | driver p50 ms | driver p99 ms | floor p50 ms | floor p99 ms |', '|---|---|---|---|---|---|---|---|---|---|'];
  for (const p of r.phases.filter((x) => x.who === 'driver')) {
    const fl = phase(r, 'floor', p.name, p.concurrency);
    rows.push(`| ${p.name} | ${p.concurrency} | ${p.ok}/${p.n} | ${f1(p.perSecond)} | ${fl ? f1(fl.perSecond) : ''} | ${fl ? `${(p.perSecond / fl.perSecond).toFixed(2)}x` : ''} | ${p.p50Ms.toFixed(0)} | ${p.p99Ms.toFixed(0)} | ${fl ? fl.p50Ms.toFixed(0) : ''} | ${fl ? fl.p99Ms.toFixed(0) : ''} |`);
  }
  for (const p of r.snapshots) rows.push(`| ${p.name} | ${p.concurrency} | ${p.ok}/${p.n} | ${f1(p.perSecond)} | | | ${p.p50Ms.toFixed(0)} | ${p.p99Ms.toFixed(0)} | | |`);
  return rows;
}

function requestRows(r: Result): string[] {
  const cols: Array<[string, Phase | undefined]> = [
    ['per created volume', phase(r, 'driver', 'create', 64)], ['per deleted volume', phase(r, 'driver', 'delete', 64)],
    ['floor per create', phase(r, 'floor', 'create', 64)], ['floor per delete', phase(r, 'floor', 'delete', 64)],
    ...r.snapshots.map((p) => [`per ${p.name}`, p] as [string, Phase]),
  ];
  const per = cols.map(([, p]) => (p ? perOp(r, p) : {}));
  const keys = [...new Set(per.flatMap((c) => Object.keys(c)))].sort((a, b) => Number(isWrite(b)) - Number(isWrite(a)) || a.localeCompare(b));
  const rows = [`| request | ${cols.map(([n]) => n).join(' | ')} |`, `|---|${cols.map(() => '---|').join('')}`];
  for (const k of keys) rows.push(`| ${isWrite(k) ? '**w** ' : ''}${k} | ${per.map((c) => (c[k] ? c[k]!.toFixed(2) : '')).join(' | ')} |`);
  rows.push(`| **writes (leases excluded)** | ${per.map((c) => writes(c).toFixed(2)).join(' | ')} |`);
  return rows;
}

function scaleRows(r: Result): string[] {
  const agents = r.config.nodes;
  const rows = ['| volumes | controller CPU ms / 1,000 vols | controller RSS MiB | agents CPU ms / 1,000 vols (all) | per agent | node-process RSS MiB (mean) | per agent MiB |', '|---|---|---|---|---|---|---|'];
  for (const [i, s] of r.scale.entries()) {
    const prev = r.scale[i - 1];
    const k = prev ? (s.volumes - prev.volumes) / 1000 : 0;
    const ctl = prev && k > 0 ? (s.controllerCpuMs - prev.controllerCpuMs) / k : undefined;
    const ag = prev && k > 0 ? (s.agentsCpuMs - prev.agentsCpuMs) / k : undefined;
    const host = s.hostRssBytes.reduce((a, b) => a + b, 0) / s.hostRssBytes.length;
    rows.push(`| ${s.volumes} | ${ctl?.toFixed(0) ?? ''} | ${mib(s.controllerRssBytes)} | ${ag?.toFixed(0) ?? ''} | ${ag !== undefined ? (ag / agents).toFixed(1) : ''} | ${mib(host)} | ${(host / r.config.perHost / 1048576).toFixed(1)} |`);
  }
  return rows;
}

function watchRows(r: Result): string[] {
  const all = r.watch.beforeRestart.length ? r.watch.beforeRestart : r.watch.atEnd;
  const own = all.map((a) => a.own);
  const mean = own.reduce((a, b) => a + b, 0) / Math.max(1, own.length);
  return [
    '| agents | own objects: min / mean / max events | other nodes\' objects: max events |', '|---|---|---|',
    `| ${all.length} | ${Math.min(...own)} / ${mean.toFixed(0)} / ${Math.max(...own)} | ${foreignEvents(r)} |`,
  ];
}

export function render(r: Result): string {
  const t = targets(r);
  return [
    `# Cluster bench ${r.date.slice(0, 10)}`, '',
    `${r.config.nodes} simulated nodes in ${r.config.hosts} processes, ${r.config.volumes} volumes at concurrency 64 (controller from the ${r.config.controller}); ` +
      `${r.machine.cpus} CPUs, load average ${r.machine.loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${r.machine.loadAfter.map((x) => x.toFixed(2)).join(' ')} after${r.machine.uptime ? ` (uptime: ${r.machine.uptime})` : ''}.`, '',
    '## Targets', '', '| target | value | wanted | met |', '|---|---|---|---|',
    ...t.map((x) => `| ${x.what} | ${x.value} | ${x.target} | ${x.met ? 'yes' : '**no**'} |`), '',
    '## Rates and CreateVolume latency', '', ...rateRows(r), '',
    '## API requests per operation (apiserver_request_total, net of the idle background)', '', ...requestRows(r), '',
    `Idle background over ${r.background.seconds} s: ${Object.entries(r.background.requests).map(([k, v]) => `${k} ${(v / Math.max(1, r.background.seconds)).toFixed(2)}/s`).join(', ') || 'none'}.`, '',
    '## Watch events at the agents (before the agent restart)', '', ...watchRows(r), '',
    '## CPU and memory as volumes accumulate (concurrency-64 create)', '', ...scaleRows(r), '',
    '## Restarts and etcd', '',
    `- controller restart to Probe-ready with ${r.restarts.controllerObjects} ThinVolumes: ${r.restarts.controllerMs.toFixed(0)} ms`,
    `- agent restart to Probe-ready with ${r.restarts.agentVolumes} volumes on its node: ${r.restarts.agentMs.toFixed(0)} ms`,
    `- etcd: ${r.etcd.volumes} ThinVolumes stored at ${r.etcd.storedBytesPerVolume.toFixed(0)} B each (key + value); database in use after compaction and defragmentation / volumes: ${r.etcd.dbInUseBytesPerVolume.toFixed(0)} B`,
    `- left behind after the run: ${r.leftover.volumes} ThinVolumes, ${r.leftover.snapshots} ThinSnapshots, ${r.watch.atEnd.reduce((a, s) => a + (s.thinDevices ?? 0), 0)} thin devices in the nodes' pools`,
    ...(r.lists ? [`- lists of dmthin.csi.io resources, whole run: ${Object.entries(r.lists.byCode).map(([c, n]) => `${n} answered ${c}`).join(', ')}; ${r.lists.fromCache} served from the apiserver's watch cache`] : []), '',
  ].join('\n');
}
