/**
 * The guest made into a Kubernetes node (../shared/bin/README.md, "A real node in the test VM"):
 * cgroup v2 with the controllers the kubelet needs, the bridge modules, the node's address on lo,
 * fresh tmpfs for containerd's and the kubelet's state, a shared root (Bidirectional propagation
 * needs one), containerd with a CNI bridge, and its image store as the host made it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, stop, type Proc } from '../realkube/cluster.ts';
import { until } from '../realkube/world.ts';

export const NODE_IP = '10.0.2.15';
/** The `kubernetes` Service's address: put on lo, so pods reach the apiserver there without a kube-proxy. */
export const SERVICE_IP = '10.96.0.1';
export const CONTAINERD_SOCK = '/run/containerd/containerd.sock';
export const KUBELET_DIR = '/var/lib/kubelet';
const PAUSE = 'localhost/realcluster/pause:3.9-test';

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });

const CONTAINERD_CONFIG = `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`;

const CNI = JSON.stringify({
  cniVersion: '0.4.0', name: 'realcluster',
  plugins: [
    { type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.88.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }] } },
    { type: 'loopback' },
  ],
});

/** Kernel and filesystem setup of the node; idempotent within one boot. */
export function prepareNode(): void {
  for (const m of ['bridge', 'veth', 'br_netfilter', 'overlay']) run('modprobe', [m]);
  if (!existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    mkdirSync('/sys/fs/cgroup', { recursive: true });
    run('mount', ['-t', 'cgroup2', 'none', '/sys/fs/cgroup']);
  }
  writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+cpu +cpuset +memory +pids +io');
  const addrs = run('ip', ['-o', 'addr', 'show', 'dev', 'lo']);
  for (const a of [`${NODE_IP}/24`, `${SERVICE_IP}/32`]) if (!addrs.includes(` ${a} `)) run('ip', ['addr', 'add', a, 'dev', 'lo']);
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  for (const d of ['/var/lib/containerd', KUBELET_DIR]) {
    mkdirSync(d, { recursive: true });
    // overlayfs (the guest's root) cannot be an overlay's upper layer: containerd's snapshots need
    // tmpfs. A fresh one, over whatever is there: image.test.ts uses the chart's kubelet directory
    // too, and its staging directories were counted as this node's (measured in the full run).
    run('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', d]);
  }
  // The node plugin's kubelet-dir mount is Bidirectional: its source must be a shared mount.
  run('mount', ['--make-rshared', '/']);
  mkdirSync('/etc/cni/net.d', { recursive: true });
  writeFileSync('/etc/cni/net.d/10-realcluster.conflist', CNI);
  mkdirSync('/etc/containerd', { recursive: true });
  writeFileSync('/etc/containerd/config.toml', CONTAINERD_CONFIG);
}

export class Containerd {
  proc: Proc | undefined;
  private readonly logs: string;

  constructor(logs: string) {
    this.logs = logs;
  }

  async start(): Promise<void> {
    this.proc = launch('containerd', ['--config', '/etc/containerd/config.toml'], join(this.logs, 'containerd.log'));
    await until('containerd serving', async () => {
      if (this.proc!.child.exitCode !== null) throw new Error('containerd exited');
      return existsSync(CONTAINERD_SOCK) && run('ctr', ['--address', CONTAINERD_SOCK, 'version']).includes('Server');
    }, 120_000);
  }

  /**
   * The store scripts/build-cluster-images.sh made on the host by `ctr images import` of every image
   * archive, unpacked into containerd's (empty, not yet started) root: importing here cost 6 min.
   */
  static restoreStore(imagesDir: string): void {
    const tar = join(imagesDir, readFileSync(join(imagesDir, 'containerd-root'), 'utf8').trim());
    run('tar', ['--xattrs', '--xattrs-include=*', '-C', '/var/lib/containerd', '-xf', tar]);
  }

  /** The images the CRI knows, which must be those of images.list. */
  images(): string[] {
    return run('ctr', ['--address', CONTAINERD_SOCK, '-n', 'k8s.io', 'images', 'ls', '-q']).split('\n').filter((l) => l && !l.startsWith('sha256:'));
  }

  async stop(): Promise<void> {
    await stop(this.proc);
  }
}

/**
 * A pool of the chart's default name left by an earlier suite of the same boot (realkube runs the
 * node agent with the chart's flags): its thin devices, the pool, its loop devices and state go,
 * so this node starts as a freshly installed one.
 */
export function removeLeftPool(pool: string, stateDir: string): void {
  let majMin: string;
  try {
    majMin = run('dmsetup', ['info', '-c', '--noheadings', '--separator', ':', '-o', 'major,minor', pool]).trim();
  } catch {
    rmSync(stateDir, { recursive: true, force: true });
    return;
  }
  for (const line of run('dmsetup', ['table']).split('\n')) {
    const m = /^(\S+): \d+ \d+ thin (\d+:\d+) /.exec(line);
    if (m && m[2] === majMin) run('dmsetup', ['remove', m[1]!]);
  }
  run('dmsetup', ['remove', pool]);
  for (const img of ['data.img', 'metadata.img']) {
    for (const dev of run('losetup', ['-j', join(stateDir, 'pool', img), '-n', '-O', 'NAME']).split('\n').filter(Boolean)) run('losetup', ['-d', dev.trim()]);
  }
  rmSync(stateDir, { recursive: true, force: true });
}
