/**
 * A real control plane for the tests: Debian's etcd and the kube-apiserver from ../shared/bin,
 * on loopback, with RBAC, an audit log and the CEL gate on. The binaries are unpacked into
 * .cache/realkube/bin once (the unpack script keeps files whose checksum matches).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tail } from '../harness.ts';
import { KubeHttp } from './http.ts';
import { sleep } from '../../../src/system/delay.ts';

export const BIN_NAMES = ['kube-apiserver', 'kube-apiserver-1.24', 'csi-provisioner', 'csi-snapshotter', 'snapshot-controller', 'csi-resizer'];

/** ../shared/bin above the checkout, for host-side callers (the unit tests); run.sh does the same search. */
export function sharedBin(root: string): string {
  for (let dir = resolve(root, '..'); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'shared', 'bin', 'unpack'))) return join(dir, 'shared', 'bin');
  }
  throw new Error(`no shared/bin/unpack above ${root}: the real Kubernetes binaries are missing`);
}

/**
 * What test/realkernel/run.sh put under .cache/realkube on the host before the boot: the unpacked
 * binaries of ../shared/bin (`bin/`) and the external-snapshotter CRDs (`crds/`). The suites in the
 * guest read only these: a checkout under /tmp sees the guest's own tmpfs where ../shared was.
 */
export function realkubeCache(root: string, sub: 'bin' | 'crds'): string {
  const dir = join(root, '.cache', 'realkube', sub);
  if (!existsSync(dir)) throw new Error(`no ${dir}: run the suite through test/realkernel/run.sh, which fills it from ../shared on the host`);
  return dir;
}

/** The unpacked binaries' directory; on the host (unit tests) unpacks ../shared/bin when one is missing. */
export function binaries(root: string, names: string[] = BIN_NAMES): string {
  const out = join(root, '.cache', 'realkube', 'bin');
  if (!names.every((n) => existsSync(join(out, n)))) execFileSync(join(sharedBin(root), 'unpack'), [out], { stdio: 'inherit' });
  return out;
}

export interface Proc { child: ChildProcess; exited: Promise<unknown>; log: string }

export function launch(cmd: string, args: string[], log: string, env: Record<string, string> = {}): Proc {
  mkdirSync(dirname(log), { recursive: true });
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  return { child, log, exited: new Promise((r) => child.once('exit', r)) };
}

export async function stop(p: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

const ADMIN_TOKEN = 'realkube-admin-token';
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`;

export interface PlaneOptions { root: string; dir: string; logs: string; apiserver?: string; etcdPort?: number; apiPort?: number; auditPolicy?: string }

/** etcd + kube-apiserver; `admin` is a system:masters client, `audit` the path of the audit log. */
export class ControlPlane {
  readonly etcdUrl: string;
  readonly apiUrl: string;
  readonly admin: KubeHttp;
  readonly audit: string;
  etcd: Proc | undefined;
  apiserver: Proc | undefined;
  private readonly bin: string;
  private apiStarts = 0;

  private readonly o: PlaneOptions;

  constructor(o: PlaneOptions) {
    this.o = o;
    this.etcdUrl = `http://127.0.0.1:${o.etcdPort ?? 2379}`;
    this.apiUrl = `https://127.0.0.1:${o.apiPort ?? 6443}`;
    this.admin = new KubeHttp(this.apiUrl, ADMIN_TOKEN);
    this.audit = join(o.logs, 'audit.log'); // beside the logs, to read after the run
    this.bin = binaries(o.root);
  }

  async start(): Promise<void> {
    // The guest boots with loopback down; etcd and the apiserver listen on 127.0.0.1.
    if (!readFileSync('/sys/class/net/lo/flags', 'utf8').trim().match(/[13579bdf]$/i)) execFileSync('ip', ['link', 'set', 'lo', 'up']);
    rmSync(this.o.dir, { recursive: true, force: true });
    rmSync(this.audit, { force: true });
    mkdirSync(join(this.o.dir, 'certs'), { recursive: true });
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(this.o.dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(this.o.dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(this.o.dir, 'tokens.csv'), `${ADMIN_TOKEN},realkube-admin,realkube-admin,"system:masters"\n`);
    writeFileSync(join(this.o.dir, 'audit-policy.yaml'), this.o.auditPolicy ?? AUDIT_POLICY);
    const peer = `http://127.0.0.1:${(this.o.etcdPort ?? 2379) + 1}`;
    this.etcd = launch('etcd', ['--data-dir', join(this.o.dir, 'etcd'), '--listen-client-urls', this.etcdUrl, '--advertise-client-urls', this.etcdUrl,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `default=${peer}`], join(this.o.logs, 'etcd.log'));
    await this.startApiserver();
  }

  apiserverArgs(): string[] {
    const d = this.o.dir;
    return [`--etcd-servers=${this.etcdUrl}`, '--bind-address=127.0.0.1', `--secure-port=${this.o.apiPort ?? 6443}`, '--advertise-address=127.0.0.1',
      `--cert-dir=${join(d, 'certs')}`, `--token-auth-file=${join(d, 'tokens.csv')}`, '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local', `--service-account-key-file=${join(d, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(d, 'sa.key')}`, '--service-cluster-ip-range=10.96.0.0/16', '--endpoint-reconciler-type=none',
      '--allow-privileged=true', '--feature-gates=CustomResourceValidationExpressions=true',
      `--audit-policy-file=${join(d, 'audit-policy.yaml')}`, `--audit-log-path=${this.audit}`, '--audit-log-format=json', '--audit-log-maxsize=0'];
  }

  async startApiserver(): Promise<void> {
    const exe = join(this.bin, this.o.apiserver ?? 'kube-apiserver');
    this.apiserver = launch(exe, this.apiserverArgs(), join(this.o.logs, `apiserver-${++this.apiStarts}.log`));
    const end = Date.now() + 240_000;
    for (;;) {
      if (this.apiserver.child.exitCode !== null) throw new Error(`kube-apiserver exited:\n${tail(this.apiserver.log)}`);
      if (await this.admin.request('GET', '/readyz').then((r) => r.status === 200, () => false)) return;
      if (Date.now() > end) throw new Error(`kube-apiserver not ready:\n${tail(this.apiserver.log)}`);
      await sleep(500);
    }
  }

  async restartApiserver(): Promise<void> {
    await stop(this.apiserver);
    await this.startApiserver();
  }

  /** etcd's current revision and a compaction up to it, through etcd's JSON gateway (no etcdctl needed). */
  async compactEtcd(): Promise<number> {
    const post = async (path: string, body: object) => {
      const r = await fetch(`${this.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`etcd ${path}: ${r.status} ${await r.text()}`);
      return await r.json() as { header: { revision: string } };
    };
    const rev = Number((await post('/v3/kv/range', { key: Buffer.from('/').toString('base64') })).header.revision);
    await post('/v3/kv/compaction', { revision: String(rev), physical: true });
    return rev;
  }

  /** The audit log's events (ResponseComplete stage), one JSON object each. */
  auditEvents(): AuditEvent[] {
    return readFileSync(this.audit, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.stage === 'ResponseComplete');
  }

  async stop(): Promise<void> {
    await stop(this.apiserver);
    await stop(this.etcd);
  }
}

export interface AuditEvent {
  stage: string; verb: string; requestURI: string; userAgent?: string; requestReceivedTimestamp?: string;
  user: { username: string; groups?: string[] };
  objectRef?: { resource?: string; subresource?: string; apiGroup?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  annotations?: Record<string, string>;
}
