/**
 * A one-node Kubernetes cluster in the guest, started by the test: etcd + kube-apiserver (the
 * realkube ControlPlane, here on all addresses with the Service's port), kube-controller-manager,
 * kube-scheduler, containerd and a kubelet. Admin access is a system:masters token; `helm` runs
 * with an admin kubeconfig, as a cluster administrator runs it.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeKubeconfig } from '../realkube/chart.ts';
import { binaries, ControlPlane, launch, stop, type Proc } from '../realkube/cluster.ts';
import { until } from '../realkube/world.ts';
import { Containerd, CONTAINERD_SOCK, KUBELET_DIR, NODE_IP, prepareNode } from './node.ts';

export const RUN = '/run/realcluster';
const POD_LOGS = '/var/log/pods';
/**
 * The controllers a node's volumes and the chart's workloads need (a default SA per namespace, the
 * root CA for pods, GC for helm uninstall): with all of them (resource quota and GC monitors list
 * every resource) the emulated guest's apiserver stopped answering in time.
 */
// service-ca-cert-publisher: this (MicroShift-vendored) apiserver's ServiceAccount admission adds the
// openshift-service-ca.crt ConfigMap to every pod's token volume; without it no pod starts.
// nodelifecycle: it lifts the node.kubernetes.io/not-ready:NoSchedule taint the kubelet registers the
// node with once the node is Ready; without it nothing but a pod tolerating it is ever placed.
const CONTROLLERS = ['deployment', 'replicaset', 'daemonset', 'garbagecollector', 'serviceaccount', 'root-ca-cert-publisher', 'service-ca-cert-publisher', 'nodelifecycle', 'persistentvolume-binder',
  'persistentvolume-expander', 'pvc-protection', 'pv-protection', 'attachdetach'].join(',');
const BINS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'helm'];

/** The apiserver where pods find it: the `kubernetes` Service's address and port (443), the node's address advertised. */
class NodePlane extends ControlPlane {
  override apiserverArgs(): string[] {
    return [...super.apiserverArgs().map((a) => (a === '--bind-address=127.0.0.1' ? '--bind-address=0.0.0.0'
      : a === '--advertise-address=127.0.0.1' ? `--advertise-address=${NODE_IP}` : a)),
    // kubectl logs: dial the node's InternalIP, its name resolves nowhere here.
    '--kubelet-preferred-address-types=InternalIP'];
  }
}

/** Only the pods of kube-system's ServiceAccounts (the chart's among them): the kubelet's and controllers' traffic would swamp the log. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: None
`;

const KUBELET_CONFIG = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
# The apiserver reads logs with no client certificate of its own here.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# Everything is on tmpfs in the guest's RAM; the imported images must never be collected (no registry).
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
`;

export class Cluster {
  readonly plane: NodePlane;
  readonly node: string;
  readonly containerd: Containerd;
  kubelet: Proc | undefined;
  private kcm: Proc | undefined;
  private scheduler: Proc | undefined;
  private kubeletStarts = 0;
  readonly bin: string;
  private readonly logs: string;
  adminKubeconfig = '';

  constructor(o: { root: string; logs: string; node: string }) {
    this.logs = o.logs;
    this.node = o.node;
    this.bin = binaries(o.root, BINS);
    this.plane = new NodePlane({ root: o.root, dir: join(RUN, 'plane'), logs: o.logs, etcdPort: 2479, apiPort: 443, auditPolicy: AUDIT_POLICY });
    this.containerd = new Containerd(o.logs);
  }

  get api() { return this.plane.admin; }

  /** The node prepared and containerd up with its images while etcd and the apiserver start. */
  async start(imagesDir: string): Promise<void> {
    rmSync(RUN, { recursive: true, force: true });
    mkdirSync(RUN, { recursive: true });
    prepareNode();
    Containerd.restoreStore(imagesDir);
    const node = this.containerd.start().then(() => {
      const want = readFileSync(join(imagesDir, 'images.list'), 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[1]!);
      const missing = want.filter((i) => !this.containerd.images().includes(i));
      if (missing.length) throw new Error(`containerd lacks ${missing.join(', ')}`);
    });
    await this.plane.start();
    this.adminKubeconfig = writeKubeconfig(join(RUN, 'admin.kubeconfig'), this.plane.apiUrl, this.api.token, 'admin');
    const kc = `--kubeconfig=${this.adminKubeconfig}`;
    const d = join(RUN, 'plane');
    this.kcm = launch(join(this.bin, 'kube-controller-manager'), [kc, '--leader-elect=false', `--service-account-private-key-file=${join(d, 'sa.key')}`,
      `--root-ca-file=${join(d, 'certs', 'apiserver.crt')}`, '--use-service-account-credentials=false', `--controllers=${CONTROLLERS}`], join(this.logs, 'kube-controller-manager.log'));
    this.scheduler = launch(join(this.bin, 'kube-scheduler'), [kc, '--leader-elect=false'], join(this.logs, 'kube-scheduler.log'));
    await node;
    writeFileSync(join(RUN, 'kubelet.yaml'), KUBELET_CONFIG);
    this.startKubelet();
    await this.nodeReady();
  }

  startKubelet(): void {
    this.kubelet = launch(join(this.bin, 'kubelet'), [`--kubeconfig=${this.adminKubeconfig}`, `--config=${join(RUN, 'kubelet.yaml')}`,
      `--container-runtime-endpoint=unix://${CONTAINERD_SOCK}`, `--hostname-override=${this.node}`, `--node-ip=${NODE_IP}`, `--root-dir=${KUBELET_DIR}`, '--v=2'],
    join(this.logs, `kubelet-${++this.kubeletStarts}.log`));
  }

  /** How often the running kubelet logged `what` (its log at --v=2 is where it says what it did). */
  kubeletSaid(what: string): number {
    return readFileSync(join(this.logs, `kubelet-${this.kubeletStarts}.log`), 'utf8').split(what).length - 1;
  }

  /**
   * Waits until the running kubelet registered the driver more than `before` times: a node plugin
   * pod is Ready as soon as its containers run, before node-driver-registrar has registered it.
   */
  async driverRegistered(driver: string, before: number): Promise<void> {
    await until(`the kubelet registering ${driver}`, async () => this.kubeletSaid(`Register new plugin with name: ${driver} `) > before, 300_000);
  }

  async stopKubelet(): Promise<void> {
    await stop(this.kubelet);
  }

  /** Ready as of a status the kubelet posted after `since` (ms since the epoch), when given. */
  async nodeReady(ms = 300_000, since = 0): Promise<void> {
    await until(`node ${this.node} Ready`, async () => {
      const n = await this.api.get(`/api/v1/nodes/${this.node}`);
      // Ready, and schedulable: the not-ready taint lifted (by kcm's nodelifecycle controller).
      return (n.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True' && Date.parse(c.lastHeartbeatTime) >= since - 1000)
        && !(n.spec?.taints ?? []).some((t: any) => t.key === 'node.kubernetes.io/not-ready');
    }, ms);
  }

  /** helm with the admin kubeconfig; resolves with its output, rejects with it on a non-zero exit. */
  helm(args: string[]): Promise<string> {
    const home = join(RUN, 'helm');
    const env = { ...process.env, KUBECONFIG: this.adminKubeconfig, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
    return new Promise((resolve, reject) => {
      execFile(join(this.bin, 'helm'), args, { env, timeout: 600_000, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`helm ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`));
        else resolve(`${stdout}${stderr}`);
      });
    });
  }

  async stop(): Promise<void> {
    // The containers' own logs (the kubelet keeps them on the node, gone with the guest): what a
    // node plugin's start or a sidecar's retry did is read there afterwards.
    // Never in the way of the stops below: a log rotated away mid-copy loses only that copy.
    try {
      rmSync(join(this.logs, 'pods'), { recursive: true, force: true });
      if (existsSync(POD_LOGS)) cpSync(POD_LOGS, join(this.logs, 'pods'), { recursive: true });
    } catch (err) {
      console.log(`realcluster: the pods' logs not kept: ${String(err)}`);
    }
    await this.stopKubelet();
    await this.containerd.stop();
    await stop(this.scheduler);
    await stop(this.kcm);
    await this.plane.stop();
  }
}
