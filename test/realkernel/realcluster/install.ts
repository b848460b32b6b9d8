/**
 * The driver installed as users install it: the snapshot CRDs and snapshot-controller as a cluster
 * ships them, then `helm install` of charts/dmthin-csi with ./values.yaml (only this cluster's
 * differences), and the waits a user makes with kubectl: the workloads rolled out and ready.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import type { Obj } from '../realkube/chart.ts';
import { pathOf, type KubeHttp } from '../realkube/http.ts';
import { until } from '../realkube/world.ts';
import type { Cluster } from './cluster.ts';

export const NS = 'kube-system';
export const RELEASE = 'dmthin-csi';
const APPS = `/apis/apps/v1/namespaces/${NS}`;

function yamlObjects(text: string): Obj[] {
  return (loadAll(text) as Obj[]).filter(Boolean);
}

/** `kubectl apply -f` of the external-snapshotter CRDs, then its snapshot-controller; waits until the CRDs serve. */
export async function installSnapshotSupport(api: KubeHttp, crdDir: string, controllerYaml: string): Promise<void> {
  const crds = readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).flatMap((f) => yamlObjects(readFileSync(join(crdDir, f), 'utf8')));
  for (const c of crds) await api.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', c);
  for (const c of crds) {
    await until(`CRD ${c.metadata.name} established`, async () => (await api.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${c.metadata.name}`))
      .status?.conditions?.some((x: any) => x.type === 'Established' && x.status === 'True'), 60_000);
  }
  for (const o of yamlObjects(readFileSync(controllerYaml, 'utf8'))) await api.create(pathOf(o, false), o);
}

/** This suite's files (values.yaml, snapshot-controller.yaml), from the checkout: the suite runs bundled in dist/. */
export const suiteFile = (root: string, name: string) => join(root, 'test', 'realkernel', 'realcluster', name);

/**
 * helm install (or upgrade, with extra --set flags) of the chart into kube-system. Without the
 * schema check against the server's OpenAPI document: the emulated guest's apiserver takes longer to
 * build it than helm's fixed 32 s request timeout (measured: "INSTALLATION FAILED ... openapi/v2").
 */
export async function helmInstall(c: Cluster, root: string, verb: 'install' | 'upgrade' = 'install', set: string[] = []): Promise<string> {
  return await c.helm([verb, RELEASE, join(root, 'charts', 'dmthin-csi'), '--namespace', NS, '-f', suiteFile(root, 'values.yaml'), '--disable-openapi-validation', ...set.flatMap((s) => ['--set', s])]);
}

/** The rendered objects of the release, as helm stored them (for the RBAC audit). */
export async function releaseObjects(c: Cluster): Promise<Obj[]> {
  return yamlObjects(await c.helm(['get', 'manifest', RELEASE, '--namespace', NS]));
}

/** A workload's pods all Running with every container ready, after its rollout reached `generation`. */
export async function rolledOut(api: KubeHttp, kind: 'deployments' | 'daemonsets', name: string, ms = 600_000): Promise<any[]> {
  return await until(`${kind}/${name} rolled out and ready`, async () => {
    const w = await api.get(`${APPS}/${kind}/${name}`);
    if ((w.status?.observedGeneration ?? 0) < w.metadata.generation) return undefined;
    const want = kind === 'deployments' ? w.spec.replicas : w.status.desiredNumberScheduled;
    const updated = kind === 'deployments' ? w.status.updatedReplicas : w.status.updatedNumberScheduled;
    const ready = kind === 'deployments' ? w.status.readyReplicas : w.status.numberReady;
    if (!want || updated !== want || ready !== want) return undefined;
    const sel = Object.entries(w.spec.selector.matchLabels as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',');
    const pods = (await api.get(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(sel)}`)).items
      .filter((p: any) => !p.metadata.deletionTimestamp);
    const ok = pods.length === want && pods.every((p: any) => p.status.phase === 'Running' && p.status.containerStatuses?.every((s: any) => s.ready));
    return ok ? pods : undefined;
  }, ms);
}
