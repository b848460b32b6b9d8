import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, parseFlags } from '../../../src/cli/config.ts';

const growth = (...argv: string[]) => buildConfig(parseFlags(argv), {}).growth;

test('--pool-grow-max: a size turns automatic growth on up to it; unset, none; not a size, a usage error', () => {
  assert.equal(growth(), undefined);
  assert.deepEqual(growth('--pool-grow-max', '512Gi'), { maxDataBytes: 512 * 1024 ** 3 });
  assert.throws(() => growth('--pool-grow-max=lots'), /--pool-grow-max/);
});
