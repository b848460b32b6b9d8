/**
 * What can be checked of the image without a Docker engine: the Dockerfile's shape, that every
 * package it installs exists in Debian bookworm (this machine's apt lists; skipped when apt has
 * no lists), that everything it copies exists and passes .dockerignore, and that the bundle it
 * ships runs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './render.ts';

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
/** Instructions with continuation lines joined. */
const instructions = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const REQUIRED_PACKAGES = ['dmsetup', 'e2fsprogs', 'xfsprogs', 'util-linux', 'mount', 'thin-provisioning-tools'];

function installedPackages(): string[] {
  const run = instructions.find((l) => l.startsWith('RUN ') && l.includes('apt-get install'));
  assert.ok(run, 'no apt-get install in the Dockerfile');
  const after = run.slice(run.indexOf('apt-get install') + 'apt-get install'.length).split('&&')[0]!;
  return after.trim().split(/\s+/).filter((w) => !w.startsWith('-'));
}

test('multi-stage: Node 24 bookworm build stage, Node 24 bookworm runtime', () => {
  const froms = instructions.filter((l) => l.startsWith('FROM '));
  assert.deepEqual(froms, ['FROM node:24-bookworm-slim AS build', 'FROM node:24-bookworm-slim']);
  assert.ok(instructions.includes('RUN npm ci'));
  assert.ok(instructions.some((l) => l.startsWith('RUN npm run build')));
  assert.ok(instructions.some((l) => l === 'COPY --from=build /src/dist/ /app/'));
  assert.ok(instructions.includes('COPY proto/csi.proto proto/LICENSE /usr/share/dmthin-csi/'));
  assert.ok(instructions.includes('ENTRYPOINT ["/usr/local/bin/dmthin-csi"]'));
});

test('non-interactive apt, no recommends, lists removed, no secrets', () => {
  assert.ok(instructions.includes('ARG DEBIAN_FRONTEND=noninteractive'));
  const run = instructions.find((l) => l.includes('apt-get install'))!;
  assert.match(run, /apt-get install -y --no-install-recommends/);
  assert.match(run, /rm -rf \/var\/lib\/apt\/lists\/\*/);
  assert.doesNotMatch(dockerfile, /(TOKEN|PASSWORD|SECRET|_KEY)\s*=/i);
});

test('the runtime installs the tools the driver and the CLI run', () => {
  assert.deepEqual(installedPackages().sort(), [...REQUIRED_PACKAGES].sort());
});

test('every package exists in this Debian release', (t) => {
  const probe = spawnSync('apt-cache', ['show', 'dmsetup'], { encoding: 'utf8' });
  if (probe.status !== 0 || !probe.stdout.includes('Package: dmsetup')) {
    t.skip('apt-cache has no package lists here (run apt-get update)');
    return;
  }
  const release = readFileSync('/etc/os-release', 'utf8');
  if (!/VERSION_CODENAME=bookworm/.test(release)) {
    t.skip('this machine is not Debian bookworm, the image base');
    return;
  }
  const pkgs = installedPackages();
  const out = spawnSync('apt-cache', ['show', '--no-all-versions', ...pkgs], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const found = new Set([...out.stdout.matchAll(/^Package: (\S+)$/gm)].map((m) => m[1]));
  assert.deepEqual(pkgs.filter((p) => !found.has(p)), [], 'not in the apt lists');
});

test('everything the Dockerfile copies from the context exists and passes .dockerignore', () => {
  const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l.startsWith('!'))
    .map((l) => l.slice(1).replace(/\/$/, ''));
  for (const line of instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
    const sources = line.split(/\s+/).slice(1, -1);
    for (const src of sources) {
      assert.ok(existsSync(path.join(ROOT, src)), `${src} does not exist`);
      const top = src.replace(/\/$/, '').split('/')[0]!;
      assert.ok(ignore.includes(top) || ignore.includes(src.replace(/\/$/, '')), `${src} is excluded by .dockerignore`);
    }
  }
});

test('the bundle the image ships runs', () => {
  const bundle = path.join(ROOT, 'dist/dmthin-csi.mjs');
  if (!existsSync(bundle)) execFileSync(process.execPath, [path.join(ROOT, 'scripts/bundle.mjs')], { cwd: ROOT, stdio: 'inherit' });
  const out = execFileSync(process.execPath, [bundle, 'help'], { cwd: '/', encoding: 'utf8' });
  assert.match(out, /Usage: dmthin-csi COMMAND/);
});

/** The node flags the image's wrapper script starts the driver with. */
function wrapperFlags(): string {
  const run = instructions.find((l) => l.startsWith('RUN printf') && l.includes('/usr/local/bin/dmthin-csi'));
  assert.ok(run, 'no wrapper script in the image');
  const m = /exec node (.*?) \/app\/dmthin-csi\.mjs/.exec(run);
  assert.ok(m, run);
  return m[1]!.replace('--enable-source-maps', '').trim();
}

test('every start of the driver, in the image, the chart and npm start, gets the same V8 sizing flags', () => {
  const env = instructions.find((l) => l.startsWith('ENV NODE_OPTIONS='));
  assert.ok(env, 'no NODE_OPTIONS in the runtime image');
  const flags = env.slice('ENV NODE_OPTIONS='.length);
  assert.match(flags, /^--max-semi-space-size=\d+$/);
  assert.equal(wrapperFlags(), '--optimize-for-size');
  const start = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
  assert.ok(start.includes(`node ${flags} ${wrapperFlags()} dist/dmthin-csi.mjs`), `npm start: ${start}`);
  // The node DaemonSet replaces the entrypoint with a shell command: it must exec the wrapper too.
  const nodeTemplate = readFileSync(path.join(ROOT, 'charts/dmthin-csi/templates/node.yaml'), 'utf8');
  assert.match(nodeTemplate, /exec dmthin-csi node\b/);
  assert.doesNotMatch(nodeTemplate, /exec node /);
  // Node refuses, and does not start, with a flag NODE_OPTIONS does not allow.
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write("up")'], { env: { ...process.env, NODE_OPTIONS: flags }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'up');
  const w = spawnSync(process.execPath, [...wrapperFlags().split(' '), '-e', 'process.stdout.write("up")'], { encoding: 'utf8' });
  assert.equal(w.status, 0, w.stderr);
});

test('the runtime purges xfsprogs\' python3 and libicu stack, never a package of a tool the driver runs', () => {
  const run = instructions.find((l) => l.startsWith('RUN ') && l.includes('apt-get install'))!;
  const m = /grep -xE '([^']+)'/.exec(run);
  assert.ok(m, 'no purge list in the apt layer');
  const purged = new RegExp(`^(?:${m[1]})$`);
  for (const p of ['python3', 'python3.11-minimal', 'libpython3.11-stdlib', 'libicu72']) assert.ok(purged.test(p), `${p} is purged`);
  // The tools' packages and the libraries they link (bookworm): dmsetup, mkfs/resize2fs/fsck.ext4,
  // mkfs.xfs/xfs_growfs, thin_check/thin_ls, blkid/blockdev/losetup/mount.
  const kept = [...REQUIRED_PACKAGES, 'libdevmapper1.02.1', 'libext2fs2', 'libcom-err2', 'libss2', 'logsave', 'libinih1', 'liburcu8',
    'libedit2', 'libbsd0', 'libmd0', 'libtinfo6', 'libaio1', 'libexpat1', 'libstdc++6', 'libgcc-s1', 'libblkid1', 'libuuid1', 'libmount1', 'libselinux1'];
  assert.deepEqual(kept.filter((p) => purged.test(p)), []);
  // Only what this layer installed is purged, and the build fails if anything but xfsprogs is left with unmet dependencies.
  assert.match(run, /comm -13 \/tmp\/base-packages -/);
  assert.match(run, /apt-get check .*= xfsprogs/);
});
