/**
 * The image's containers in the guest, run the way a container runtime runs the chart's pods,
 * without one (the guest has no network and no container storage): each container's root is an
 * overlay of the image's exported root filesystem (read-only lower, on the checkout share) under
 * a tmpfs upper, so nothing a run writes reaches the export; the pod spec's hostPath volumes are
 * bind mounts at their mountPaths; the process is the container's command (or the image's
 * entrypoint + the pod's args, $(VAR) expanded as the kubelet does) with the image's ENV plus the
 * pod's env, started by chroot as root with every capability (the node pod is privileged).
 * Kubernetes access comes from a kubeconfig (no service-account token here).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { LOGS, ROOT } from './harness.ts';

export const IMAGE_ROOTFS = join(ROOT, '.cache/image/rootfs');
const PODS = '/run/dmthin-rk-image-pods';

type Obj = Record<string, any>;
export interface Container { root: string; child: ChildProcess; exited: Promise<number | null>; log: string }
export interface ImageConfig { Env?: string[]; Entrypoint?: string[]; Cmd?: string[] }

/** The chart rendered with its default values (deploy/dmthin-csi.yaml, kept equal to the chart by the deploy unit tests). */
export function manifest(): Obj[] {
  return (loadAll(readFileSync(join(ROOT, 'deploy/dmthin-csi.yaml'), 'utf8')) as Obj[]).filter(Boolean);
}

export function imageConfig(): ImageConfig {
  const file = `${IMAGE_ROOTFS}.config.json`;
  if (!existsSync(file)) throw new Error(`${file} missing: run scripts/build-image.sh --export ${IMAGE_ROOTFS}`);
  return JSON.parse(readFileSync(file, 'utf8')) as ImageConfig;
}

function mount(args: string[]): void {
  execFileSync('mount', args, { stdio: 'inherit' });
}

function bind(source: string, root: string, target: string, extra: string[] = []): void {
  mkdirSync(source, { recursive: true });
  mkdirSync(join(root, target), { recursive: true });
  mount(['--bind', source, join(root, target)]);
  for (const opt of extra) mount(['-o', opt, join(root, target)]);
}

/** The container's root: the image under a throwaway writable layer, /proc mounted. */
export function containerRoot(name: string): string {
  const base = join(PODS, name);
  for (const d of ['upper', 'work', 'root']) mkdirSync(join(base, d), { recursive: true });
  const root = join(base, 'root');
  mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${IMAGE_ROOTFS},upperdir=${base}/upper,workdir=${base}/work`, root]);
  mount(['-t', 'proc', 'proc', join(root, 'proc')]);
  return root;
}

/** A non-privileged container's /dev: a tmpfs with the usual character devices, bound from the guest's. */
export function minimalDev(root: string): void {
  mount(['-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', join(root, 'dev')]);
  for (const n of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
    writeFileSync(join(root, 'dev', n), '');
    mount(['--bind', `/dev/${n}`, join(root, 'dev', n)]);
  }
}

/** The pod spec's hostPath volumes (and a configMap, from a host dir) at their mountPaths. */
export function mountVolumes(root: string, pod: Obj, container: Obj, configMapDirs: Record<string, string> = {}): void {
  const volumes = new Map<string, Obj>((pod.volumes ?? []).map((v: Obj) => [v.name, v]));
  for (const m of container.volumeMounts ?? []) {
    const v = volumes.get(m.name)!;
    const source = v.hostPath?.path ?? configMapDirs[v.configMap?.name] ?? join(root, '..', `emptydir-${m.name}`);
    if (v.hostPath?.path === '/dev' || v.hostPath?.path === '/sys') {
      mkdirSync(join(root, m.mountPath), { recursive: true });
      mount(['--rbind', source, join(root, m.mountPath)]);
      continue;
    }
    // Bidirectional: the host side is a shared mount, so what the driver mounts under it
    // shows on the host, as the kubelet's mounts must.
    if (m.mountPropagation === 'Bidirectional') {
      mkdirSync(source, { recursive: true });
      mount(['--bind', source, source]);
      mount(['--make-shared', source]);
    }
    bind(source, root, m.mountPath, m.readOnly ? ['remount,bind,ro'] : []);
  }
}

/** The process a container runs: command, or the image's entrypoint + args; $(VAR) from the env. */
export function containerProcess(image: ImageConfig, container: Obj, env: Record<string, string>): { argv: string[]; env: Record<string, string> } {
  const full: Record<string, string> = { HOME: '/root' };
  for (const kv of image.Env ?? []) full[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  Object.assign(full, env);
  const expand = (s: string) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => full[n] ?? m);
  const argv = container.command ? [...container.command, ...(container.args ?? [])]
    : [...(image.Entrypoint ?? []), ...(container.args ?? image.Cmd ?? [])];
  return { argv: argv.map(expand), env: full };
}

export function startContainer(root: string, name: string, proc: { argv: string[]; env: Record<string, string> }): Container {
  mkdirSync(LOGS, { recursive: true });
  const log = join(LOGS, `image-${name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn('chroot', [root, ...proc.argv], { stdio: ['ignore', fd, fd], env: proc.env });
  closeSync(fd);
  return { root, child, log, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

export async function stopContainer(c: Container | undefined): Promise<number | null> {
  if (!c) return null;
  if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM');
  return c.exited;
}

/** Unmounts everything under the container's root, innermost first. */
export function removeContainer(root: string): void {
  execFileSync('umount', ['-R', '-l', root], { stdio: 'inherit' });
}
