// The control plane of the cluster bench: etcd and the real kube-apiserver (test/realkernel/
// realkube/cluster.ts starts them, without its audit log here: /metrics counts the requests),
// the project's CRDs, an admin kubeconfig, and readings of the apiserver's and etcd's own numbers.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { ControlPlane } from '../../test/realkernel/realkube/cluster.ts';
import { writeKubeconfig } from '../../test/realkernel/realkube/chart.ts';
import { sleep } from '../../src/system/delay.ts';

const CRD_FILES = ['dmthin.csi.io_thinpools.yaml', 'dmthin.csi.io_thinvolumes.yaml', 'dmthin.csi.io_thinsnapshots.yaml', 'dmthin.csi.io_thingroupsnapshots.yaml'];
const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/** The request counters are cumulative: a phase's cost is the difference of two readings. */
export type Counts = Record<string, number>;

export class BenchPlane extends ControlPlane {
  kubeconfig = '';

  /** No audit log: at 10,000 volumes it costs the apiserver more than the requests it records. */
  override apiserverArgs(): string[] {
    return super.apiserverArgs().filter((a) => !a.startsWith('--audit-'));
  }

  async up(root: string, dir: string): Promise<void> {
    await this.start();
    for (const f of CRD_FILES) await this.admin.create(CRDS, load(readFileSync(join(root, 'deploy', 'crds', f), 'utf8')) as object);
    for (const f of CRD_FILES) await this.established(f.replace(/^dmthin\.csi\.io_(\w+)\.yaml$/, '$1.dmthin.csi.io'));
    this.kubeconfig = writeKubeconfig(join(dir, 'admin.kubeconfig'), this.apiUrl, this.admin.token, 'admin');
  }

  /**
   * Node objects, as each kubelet registers its own: without them the controller takes every
   * node for deleted and drops the finalizers of deleted volumes itself (KubeBackend.releaseIfUnowned).
   */
  async registerNodes(names: readonly string[]): Promise<void> {
    for (let i = 0; i < names.length; i += 20) {
      await Promise.all(names.slice(i, i + 20).map((name) => this.admin.create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } } })));
    }
  }

  private async established(name: string): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const crd = await this.admin.get(`${CRDS}/${name}`);
      if (crd.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Established' && c.status === 'True')) return;
      await sleep(100);
    }
    throw new Error(`CRD ${name} not Established`);
  }

  /** apiserver_request_total by "VERB resource[/subresource]" (group-less resources included). */
  async requests(): Promise<Counts> {
    const r = await this.admin.request('GET', '/metrics');
    const out: Counts = {};
    for (const line of String(r.body).split('\n')) {
      if (!line.startsWith('apiserver_request_total{')) continue;
      const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
      out[key] = (out[key] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return out;
  }

  /**
   * How the apiserver answered the lists of the project's resources: by HTTP code, and how many
   * it served from its watch cache (apiserver_cache_list_total) instead of reading etcd.
   */
  async lists(): Promise<{ byCode: Counts; fromCache: number }> {
    const text = String((await this.admin.request('GET', '/metrics')).body);
    const byCode: Counts = {};
    let fromCache = 0;
    for (const line of text.split('\n')) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (line.startsWith('apiserver_cache_list_total{') && line.includes('resource_prefix="/dmthin.csi.io/')) fromCache += value;
      if (!line.startsWith('apiserver_request_total{') || !line.includes('group="dmthin.csi.io"') || !line.includes('verb="LIST"')) continue;
      const code = /code="(\d+)"/.exec(line)?.[1] ?? '?';
      byCode[code] = (byCode[code] ?? 0) + value;
    }
    return { byCode, fromCache };
  }

  private async etcdPost(path: string, body: object): Promise<any> {
    const r = await fetch(`${this.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`etcd ${path}: ${r.status} ${await r.text()}`);
    return await r.json();
  }

  /** The objects etcd holds under a key prefix: how many, and their stored bytes (keys and values). */
  async stored(prefix: string): Promise<{ count: number; bytes: number }> {
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const r = await this.etcdPost('/v3/kv/range', { key: b64(prefix), range_end: b64(end) });
    const kvs = (r.kvs ?? []) as Array<{ key: string; value: string }>;
    const bytes = kvs.reduce((n, kv) => n + Buffer.from(kv.key, 'base64').length + Buffer.from(kv.value, 'base64').length, 0);
    return { count: kvs.length, bytes };
  }

  /** etcd's database: compacted to now and defragmented first, so the size is what the live keys take. */
  async dbSize(): Promise<{ dbSize: number; dbSizeInUse: number }> {
    await this.compactEtcd();
    await this.etcdPost('/v3/maintenance/defragment', {});
    const s = await this.etcdPost('/v3/maintenance/status', {});
    return { dbSize: Number(s.dbSize), dbSizeInUse: Number(s.dbSizeInUse ?? s.dbSize) };
  }
}

export function delta(after: Counts, before: Counts): Counts {
  const out: Counts = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

const WRITE = /^(POST|PUT|PATCH|DELETE|APPLY) /;
export const isWrite = (key: string) => WRITE.test(key);

/** Leases are renewed by time (the controller's, the apiserver's own), not by volume: kept apart. */
export const isVolumeCost = (key: string) => !/ leases$/.test(key);
