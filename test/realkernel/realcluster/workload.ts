/**
 * What users create: PVCs of the chart's StorageClass, VolumeSnapshots, and busybox pods that use
 * them, plus the reads a user makes of them (phase, logs). Nothing here stands in for a cluster
 * component: the scheduler, kube-controller-manager and the kubelet do the rest.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { KubeHttp } from '../realkube/http.ts';
import { until } from '../realkube/world.ts';
import { KUBELET_DIR } from './node.ts';

export const NS = 'default';
const CORE = `/api/v1/namespaces/${NS}`;
const SNAPS = `/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots`;
export const BUSYBOX = 'localhost/realcluster/busybox:test';
export const DRIVER = 'dmthin.csi.io';

export type DataSource = { kind: string; name: string; apiGroup?: string };

export class Workload {
  readonly api: KubeHttp;

  constructor(api: KubeHttp) {
    this.api = api;
  }

  pvc(name: string): Promise<any> { return this.api.get(`${CORE}/persistentvolumeclaims/${name}`); }
  pod(name: string): Promise<any> { return this.api.get(`${CORE}/pods/${name}`); }

  async createPvc(name: string, size: string, o: { dataSource?: DataSource; block?: boolean } = {}): Promise<void> {
    await this.api.create(`${CORE}/persistentvolumeclaims`, {
      apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name },
      spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'dmthin', resources: { requests: { storage: size } },
        ...(o.block ? { volumeMode: 'Block' } : {}), ...(o.dataSource ? { dataSource: o.dataSource } : {}) },
    });
  }

  /** A busybox pod running `script`, claims mounted at /CLAIM (or, for `devices`, a block device at /dev/CLAIM). */
  async createPod(name: string, script: string, claims: string[], devices: string[] = [], restartPolicy = 'Never'): Promise<void> {
    const all = [...claims, ...devices];
    await this.api.create(`${CORE}/pods`, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name },
      spec: {
        restartPolicy, terminationGracePeriodSeconds: 2,
        containers: [{
          name: 'c', image: BUSYBOX, imagePullPolicy: 'Never', command: ['/bin/sh', '-c', script],
          volumeMounts: claims.map((c) => ({ name: c, mountPath: `/${c}` })),
          volumeDevices: devices.map((c) => ({ name: c, devicePath: `/dev/${c}` })),
        }],
        volumes: all.map((c) => ({ name: c, persistentVolumeClaim: { claimName: c } })),
      },
    });
  }

  /** The pod once in one of `want` (or Failed, which no wait here wants: the caller's assertion shows it). */
  async phase(name: string, want: string[], ms?: number): Promise<any> {
    return await until(`pod ${name} ${want.join('/')}`, async () => {
      const p = await this.pod(name);
      return want.includes(p.status?.phase) || p.status?.phase === 'Failed' ? p : undefined;
    }, ms);
  }

  logs(name: string): Promise<string> {
    return this.api.request('GET', `${CORE}/pods/${name}/log`).then((r) => (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)));
  }

  /** Waits until the pod's log matches, returning the match. */
  async logMatch(name: string, re: RegExp, ms?: number): Promise<RegExpMatchArray> {
    return await until(`log of ${name} matching ${re}`, async () => (await this.logs(name)).match(re) ?? undefined, ms);
  }

  async deletePod(name: string): Promise<void> {
    await this.api.delete(`${CORE}/pods/${name}`);
    await until(`pod ${name} gone`, async () => (await this.api.request('GET', `${CORE}/pods/${name}`)).status === 404);
  }

  async deletePvc(name: string): Promise<void> {
    const pv = (await this.pvc(name)).spec.volumeName as string | undefined;
    await this.api.delete(`${CORE}/persistentvolumeclaims/${name}`);
    await until(`PVC ${name} gone`, async () => (await this.api.request('GET', `${CORE}/persistentvolumeclaims/${name}`)).status === 404);
    if (pv) await until(`PV ${pv} deleted`, async () => (await this.api.request('GET', `/api/v1/persistentvolumes/${pv}`)).status === 404);
  }

  async snapshot(name: string, pvc: string): Promise<any> {
    await this.api.create(SNAPS, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name },
      spec: { volumeSnapshotClassName: 'dmthin', source: { persistentVolumeClaimName: pvc } } });
    return await until(`VolumeSnapshot ${name} ready`, async () => {
      const s = await this.api.get(`${SNAPS}/${name}`);
      return s.status?.readyToUse === true ? s.status : undefined;
    });
  }

  async deleteSnapshot(name: string): Promise<void> {
    await this.api.delete(`${SNAPS}/${name}`);
    await until(`VolumeSnapshot ${name} gone`, async () => (await this.api.request('GET', `${SNAPS}/${name}`)).status === 404);
    await until('VolumeSnapshotContents gone', async () => (await this.api.get('/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents')).items.length === 0);
  }

  /** The pod's mount of a claim as the node sees it: the kubelet's target path for the claim's PV. */
  async targetPath(pod: string, pvc: string): Promise<string> {
    const [p, c] = await Promise.all([this.pod(pod), this.pvc(pvc)]);
    return `${KUBELET_DIR}/pods/${p.metadata.uid}/volumes/kubernetes.io~csi/${c.spec.volumeName}/mount`;
  }
}

/** The node's mounts under the kubelet's directory, from its mount table (the directory's own tmpfs aside). */
export function kubeletMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${KUBELET_DIR}/`) && !m.includes('kubernetes.io~projected') && !m.includes('kubernetes.io~configmap'));
}

/** The kubelet's staging directories of the driver's volumes. */
export function stagingDirs(): string[] {
  try {
    return readdirSync(`${KUBELET_DIR}/plugins/kubernetes.io/csi/${DRIVER}`);
  } catch {
    return [];
  }
}
