/**
 * The chart on the real server, as `helm install` puts it there: its CRDs (plus the
 * external-snapshotter CRDs a cluster provides), then every rendered object of deploy/dmthin-csi.yaml
 * (the default render, byte-equal to the chart's output). The Deployment and DaemonSet are stored
 * but nothing runs them: the tests start their containers' command lines themselves.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import type { KubeHttp } from './http.ts';
import { pathOf } from './http.ts';
import { sleep } from '../../../src/system/delay.ts';

export const NS = 'kube-system';
export const RELEASE = 'dmthin-csi';
export type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: any }; [k: string]: any };

export function chartObjects(root: string): Obj[] {
  return loadAll(readFileSync(join(root, 'deploy', 'dmthin-csi.yaml'), 'utf8')).filter(Boolean) as Obj[];
}

export function crdObjects(root: string, snapshotCrds: string): Obj[] {
  const ours = readdirSync(join(root, 'deploy', 'crds')).map((f) => join(root, 'deploy', 'crds', f));
  const snaps = readdirSync(snapshotCrds).filter((f) => f.startsWith('snapshot.storage.k8s.io_')).map((f) => join(snapshotCrds, f));
  return [...ours, ...snaps].flatMap((f) => loadAll(readFileSync(f, 'utf8')) as Obj[]);
}

async function waitEstablished(api: KubeHttp, name: string): Promise<void> {
  for (const end = Date.now() + 60_000; ;) {
    const crd = await api.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    if ((crd.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True')) return;
    if (Date.now() > end) throw new Error(`CRD ${name} not established`);
    await sleep(200);
  }
}

/** Creates the CRDs, waits until each serves, then creates the chart's objects in Helm's install order. */
export async function installChart(api: KubeHttp, root: string, snapshotCrds: string): Promise<Obj[]> {
  const crds = crdObjects(root, snapshotCrds);
  for (const crd of crds) await api.create(pathOf(crd, false), crd);
  for (const crd of crds) await waitEstablished(api, crd.metadata.name);
  const objs = chartObjects(root);
  for (const o of objs) await api.create(pathOf(o, false), o);
  return objs;
}

/** A token of the ServiceAccount from the TokenRequest API, as the kubelet projects one into a pod. */
export async function serviceAccountToken(api: KubeHttp, sa: string, seconds = 7200): Promise<string> {
  const r = await api.create(`/api/v1/namespaces/${NS}/serviceaccounts/${sa}/token`,
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: seconds } });
  return r.status.token as string;
}

/** A kubeconfig for that token, read by the driver (KUBECONFIG) and the sidecars (--kubeconfig). */
export function writeKubeconfig(path: string, server: string, token: string, user: string): string {
  writeFileSync(path, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': user,
    clusters: [{ name: 'realkube', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: 'realkube', user, namespace: NS } }],
  }, null, 1), { mode: 0o600 });
  return path;
}

/** A container of the chart's workload `kind`/`name`. */
export function container(objs: Obj[], kind: string, name: string, containerName: string): { command?: string[]; args?: string[]; env?: Array<{ name: string; valueFrom?: any; value?: string }> } {
  const w = objs.find((o) => o.kind === kind && o.metadata.name === name);
  const c = w?.spec.template.spec.containers.find((x: { name: string }) => x.name === containerName);
  if (!c) throw new Error(`no container ${containerName} in ${kind} ${name}`);
  return c;
}

/** Kubelet's $(VAR) expansion of a container's args with the pod's env. */
export function expand(args: string[], env: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m));
}

/** The ClusterRole / Role rules bound to a ServiceAccount, flattened to "group/resource verb". */
export function grantedVerbs(objs: Obj[], sa: string): Set<string> {
  const bound = objs.filter((o) => (o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')
    && o.subjects.some((s: any) => s.kind === 'ServiceAccount' && s.name === sa)).map((b) => `${b.roleRef.kind}/${b.roleRef.name}`);
  const out = new Set<string>();
  for (const role of objs.filter((o) => bound.includes(`${o.kind}/${o.metadata.name}`))) {
    for (const r of role.rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) out.add(`${g || 'core'}/${res} ${v}`);
  }
  return out;
}
