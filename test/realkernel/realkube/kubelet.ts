/**
 * What kube-controller-manager, the scheduler and kubelet would do around a PVC, done by the test
 * (none of them runs here; see ../shared/bin/README.md): annotate the PVC for the provisioner and
 * with the selected node, bind the provisioned PV, drop the protection finalizers once nothing uses
 * the objects and release a PV whose claim is gone. The node calls are cluster.test.ts's, made by a
 * real kubelet.
 */
import type { KubeHttp } from './http.ts';
import { DRIVER, until } from './world.ts';

export const PVC_NS = 'default';
const PVCS = `/api/v1/namespaces/${PVC_NS}/persistentvolumeclaims`;

export interface Bound { pvc: string; pv: string; handle: string }

export class ClusterDuties {
  readonly api: KubeHttp;
  readonly node: string;

  constructor(api: KubeHttp, node: string) {
    this.api = api;
    this.node = node;
  }

  /** A WaitForFirstConsumer claim whose pod the scheduler put on our node. */
  async createPvc(name: string, size: string, dataSource?: { kind: string; name: string; apiGroup?: string }): Promise<void> {
    await this.api.create(PVCS, {
      apiVersion: 'v1', kind: 'PersistentVolumeClaim',
      metadata: { name, annotations: {
        'volume.kubernetes.io/selected-node': this.node, // the scheduler's choice
        'volume.kubernetes.io/storage-provisioner': DRIVER, // kube-controller-manager's, for a CSI class
        'volume.beta.kubernetes.io/storage-provisioner': DRIVER,
      } },
      spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'dmthin', resources: { requests: { storage: size } }, ...(dataSource ? { dataSource } : {}) },
    });
  }

  pvc(name: string): Promise<any> { return this.api.get(`${PVCS}/${name}`); }

  /** The provisioned PV, bound to its claim as the PV controller binds them. */
  async bind(pvc: string, ms?: number): Promise<Bound> {
    const pv = await until(`PV for ${pvc}`, async () => {
      const list = await this.api.get('/api/v1/persistentvolumes');
      return list.items.find((p: any) => p.spec.claimRef?.name === pvc && p.spec.claimRef?.namespace === PVC_NS);
    }, ms);
    const claim = await this.pvc(pvc);
    await this.api.mergePatch(`${PVCS}/${pvc}`, { metadata: { annotations: { 'pv.kubernetes.io/bind-completed': 'yes', 'pv.kubernetes.io/bound-by-controller': 'yes' } }, spec: { volumeName: pv.metadata.name } });
    await this.api.mergePatch(`/api/v1/persistentvolumes/${pv.metadata.name}/status`, { status: { phase: 'Bound' } });
    await this.api.mergePatch(`${PVCS}/${pvc}/status`, { status: { phase: 'Bound', accessModes: claim.spec.accessModes, capacity: pv.spec.capacity } });
    return { pvc, pv: pv.metadata.name, handle: pv.spec.csi.volumeHandle };
  }

  /**
   * Deletes the claim and does what the protection and PV controllers would: the claim's
   * finalizer goes once no pod uses it, its PV turns Released, external-provisioner deletes the
   * volume and the PV, whose protection finalizer then goes too. Resolves when the PV is gone.
   */
  async deletePvc(b: Bound): Promise<void> {
    await this.api.delete(`${PVCS}/${b.pvc}`);
    await this.dropFinalizer(`${PVCS}/${b.pvc}`, 'kubernetes.io/pvc-protection');
    await until(`PVC ${b.pvc} gone`, async () => (await this.api.request('GET', `${PVCS}/${b.pvc}`)).status === 404);
    await this.api.mergePatch(`/api/v1/persistentvolumes/${b.pv}/status`, { status: { phase: 'Released' } });
    await until(`PV ${b.pv} deleted by the provisioner`, async () => {
      const r = await this.api.request('GET', `/api/v1/persistentvolumes/${b.pv}`);
      if (r.status === 404) return true;
      if (r.body.metadata.deletionTimestamp) await this.dropFinalizer(`/api/v1/persistentvolumes/${b.pv}`, 'kubernetes.io/pv-protection');
      return false;
    });
  }

  async dropFinalizer(path: string, finalizer: string): Promise<void> {
    for (;;) {
      const r = await this.api.request('GET', path);
      if (r.status === 404) return;
      const fins: string[] = r.body.metadata.finalizers ?? [];
      if (!fins.includes(finalizer)) return;
      // A merge patch replaces the list; resourceVersion makes it fail (409, then read again) rather than
      // drop a finalizer another controller (snapshot-controller, external-provisioner) just added.
      const w = await this.api.request('PATCH', path, { metadata: { resourceVersion: r.body.metadata.resourceVersion, finalizers: fins.filter((f) => f !== finalizer) } }, 'application/merge-patch+json');
      if (w.status !== 409 && w.status !== 404) {
        if (w.status >= 300) throw new Error(`dropping ${finalizer} from ${path}: ${w.status} ${w.body?.message}`);
        return;
      }
    }
  }
}
