/**
 * A minimal bearer-token client of the real API server: plain REST, so a test sees exactly the
 * status codes and bodies the server sends (410s, CEL refusals) with no client library between.
 * The server's certificate is self-signed by the apiserver itself, so it is not verified.
 */
import { request as httpsRequest } from 'node:https';

export interface Reply { status: number; body: any }

export class KubeHttp {
  readonly url: string;
  readonly token: string;

  constructor(url: string, token: string) {
    this.url = url;
    this.token = token;
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Reply> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`${this.url}${path}`, {
        method, rejectUnauthorized: false, timeout: 60_000,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json', ...(data ? { 'content-type': contentType } : {}) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try { parsed = JSON.parse(text); } catch { /* plain text (readyz) */ }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  /** The body of a 2xx reply; anything else throws with the server's message. */
  async ok(method: string, path: string, body?: unknown, contentType?: string): Promise<any> {
    const r = await this.request(method, path, body, contentType);
    if (r.status < 200 || r.status > 299) throw Object.assign(new Error(`${method} ${path}: ${r.status} ${r.body?.message ?? JSON.stringify(r.body)}`), { status: r.status, body: r.body });
    return r.body;
  }

  get(path: string): Promise<any> { return this.ok('GET', path); }
  create(path: string, obj: object): Promise<any> { return this.ok('POST', path, obj); }
  mergePatch(path: string, patch: object): Promise<any> { return this.ok('PATCH', path, patch, 'application/merge-patch+json'); }
  delete(path: string): Promise<any> { return this.ok('DELETE', path); }
  /**
   * The server's own Table for a list (what kubectl prints): every column when `wide`, else those
   * of priority 0, laid out as kubectl lays them out (upper-case headers, columns 3 spaces apart).
   */
  async table(path: string, wide: boolean): Promise<string> {
    const t = await new Promise<any>((resolve, reject) => {
      const req = httpsRequest(`${this.url}${path}`, { rejectUnauthorized: false,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
      });
      req.on('error', reject);
      req.end();
    });
    const cols = t.columnDefinitions.map((c: any, i: number) => ({ ...c, i })).filter((c: any) => wide || c.priority === 0);
    const rows = [cols.map((c: any) => c.name.toUpperCase()), ...t.rows.map((r: any) => cols.map((c: any) => (r.cells[c.i] === null || r.cells[c.i] === undefined || r.cells[c.i] === '' ? '<none>' : String(r.cells[c.i]))))];
    const widths = cols.map((_: unknown, i: number) => Math.max(...rows.map((r: string[]) => r[i]!.length)));
    return rows.map((r: string[]) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3))).join('')).join('\n');
  }

  /** Server-side apply as `kubectl apply --server-side` would, with one field manager. */
  apply(path: string, obj: object): Promise<any> {
    return this.ok('PATCH', `${path}?fieldManager=realkube&force=true`, obj, 'application/apply-patch+yaml');
  }
}

/** The REST path of a named object (or of its collection without a name), for the kinds the tests use. */
export function pathOf(o: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }, named = true): string {
  const plural = PLURALS[o.kind];
  if (!plural) throw new Error(`no REST path known for kind ${o.kind}`);
  const base = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const ns = o.metadata.namespace ? `/namespaces/${o.metadata.namespace}` : '';
  return `${base}${ns}/${plural}${named ? `/${o.metadata.name}` : ''}`;
}

const PLURALS: Record<string, string> = {
  CustomResourceDefinition: 'customresourcedefinitions', ServiceAccount: 'serviceaccounts', ConfigMap: 'configmaps', Service: 'services',
  ClusterRole: 'clusterroles', ClusterRoleBinding: 'clusterrolebindings', Role: 'roles', RoleBinding: 'rolebindings',
  Deployment: 'deployments', DaemonSet: 'daemonsets', StorageClass: 'storageclasses', CSIDriver: 'csidrivers', CSINode: 'csinodes',
  VolumeSnapshotClass: 'volumesnapshotclasses', Namespace: 'namespaces', Node: 'nodes', PersistentVolumeClaim: 'persistentvolumeclaims',
  PersistentVolume: 'persistentvolumes', VolumeSnapshot: 'volumesnapshots', Pod: 'pods',
};
