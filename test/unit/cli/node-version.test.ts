/**
 * An older Node is refused with one line, before the bundle loads anything that fails on it
 * (undici dies at load on Node 20 with a TypeError naming nothing). Runs the real bundle, built
 * by scripts/bundle.mjs into a directory of its own, under the machine's own older node.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** Every node on PATH and in the usual places, with its major version. */
function nodes(): { path: string; major: number }[] {
  const which = spawnSync('which', ['-a', 'node'], { encoding: 'utf8' }).stdout.split('\n');
  const paths = [...new Set([...which, '/usr/bin/node', '/usr/local/bin/node'].filter((p) => p !== ''))];
  return paths.flatMap((p) => {
    const r = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    return r.status === 0 ? [{ path: p, major: Number(r.stdout.trim().split('.')[0]) }] : [];
  });
}

it('the bundle refuses a Node older than 24 with one line and exit 2, before loading its chunks', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'dmthin-bundle-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(process.execPath, [join(ROOT, 'scripts/bundle.mjs')], { cwd: ROOT, env: { ...process.env, BUNDLE_OUTDIR: out }, stdio: 'inherit' });
  const bundle = join(out, 'dmthin-csi.mjs');
  // The check comes before the first import of a chunk: only node: built-ins are loaded ahead of it.
  const text = readFileSync(bundle, 'utf8');
  const check = text.indexOf('process.versions.node');
  assert.ok(check > 0, 'the entry checks the version');
  assert.deepEqual([...text.slice(0, check).matchAll(/\bfrom\s*["']([^"']+)["']/g)].map((m) => m[1]!).filter((s) => !s.startsWith('node:')), []);
  assert.ok(text.indexOf('./chunks/') > check, 'the chunks are imported after the check');

  const old = nodes().find((n) => n.major < 24);
  assert.ok(old, `this machine has an older node to run the bundle with (found: ${JSON.stringify(nodes())})`);
  const oldVersion = spawnSync(old.path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
  for (const command of [['controller'], ['doctor'], []]) {
    const r: SpawnSyncReturns<string> = spawnSync(old.path, [bundle, ...command], { cwd: '/', encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `dmthin-csi needs Node.js >= 24 (this is v${oldVersion})\n`);
    assert.equal(r.stdout, '');
  }
  const current = spawnSync(process.execPath, [bundle, '--version'], { cwd: '/', encoding: 'utf8' });
  assert.equal(current.status, 0, current.stderr);
  assert.match(current.stdout, /^dmthin-csi \d+\.\d+\.\d+\n$/);
});
