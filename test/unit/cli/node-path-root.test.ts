import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, parseFlags } from '../../../src/cli/config.ts';

const roots = (...argv: string[]) => buildConfig(parseFlags(argv), {}).nodePathRoots;

test('--node-path-root: repeatable, unset means anywhere, trailing slashes dropped', () => {
  assert.deepEqual(roots(), []);
  assert.deepEqual(roots('--node-path-root', '/var/lib/kubelet/', '--node-path-root=/srv/k'), ['/var/lib/kubelet', '/srv/k']);
});

test('--node-path-root: a relative, non-normal or root directory is refused', () => {
  for (const bad of ['var/lib/kubelet', '/var/lib/../kubelet', '/var//lib', '/', '']) {
    assert.throws(() => roots(`--node-path-root=${bad}`), /--node-path-root/, bad);
  }
});
